#!/usr/bin/env bash
# Build the test control plane binary `ktc` into a cache outside the clone, keyed by
# the hash of go.mod + go.sum + main.go. A no-op when the binary is already there.
# Prints the binary's path on stdout (last line).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${STASH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stash}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-16)
out="$cache_root/ktc/$key/ktc"
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build.sh: the Go toolchain (go >= 1.26) is needed to build the test control plane" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
KV=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$here/go.mod" | head -n1)
minor=$(echo "$KV" | cut -d. -f2)
LDF="-s -w -X k8s.io/component-base/version.gitVersion=$KV -X k8s.io/component-base/version.gitMajor=1"
LDF="$LDF -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
LDF="$LDF -X k8s.io/client-go/pkg/version.gitVersion=$KV"
echo "build.sh: building ktc $KV into $out (10-25 minutes cold)" >&2
cd "$here"
CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$LDF" -o "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
