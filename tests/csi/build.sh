#!/usr/bin/env bash
# Build the CSI snapshot stack the VolumeSnapshotter tests run as plain processes --
# snapshot-controller and csi-snapshotter (external-snapshotter v8), csi-provisioner
# (external-provisioner v6) and dirplugin (our test driver, ./dirplugin) -- and copy
# the snapshot CRDs of external-snapshotter/client/v8, into a cache outside the clone
# keyed by the hash of this module's inputs. A no-op when they are there. Prints the
# directory (bin/ and crd/ in it) on stdout (last line).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${STASH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stash}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" "$here/dirplugin/main.go" | sha256sum | cut -c1-16)
out="$cache_root/csi/$key"
bins=(snapshot-controller csi-snapshotter csi-provisioner dirplugin)
done_=1
for b in "${bins[@]}"; do [ -x "$out/bin/$b" ] || done_=0; done
[ -d "$out/crd" ] || done_=0
if [ "$done_" = 1 ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "csi/build.sh: the Go toolchain (go >= 1.26) is needed to build the CSI snapshot stack" >&2; exit 1; }
echo "csi/build.sh: building the CSI snapshot stack into $out (about 5 CPU-minutes cold: 3-6 minutes on an idle 2-core machine, 25 on a loaded one)" >&2
cd "$here"
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/bin" "$tmp/crd"
CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$tmp/bin/" \
  github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller \
  github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter \
  github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner \
  ./dirplugin
client=$(go list -mod=mod -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8)
cp "$client"/config/crd/snapshot.storage.k8s.io_*.yaml "$tmp/crd/"
chmod -R u+w "$tmp/crd"
rm -rf "$out"
mv "$tmp" "$out"
echo "$out"
