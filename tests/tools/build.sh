#!/usr/bin/env bash
# Build the pinned Go tools the tests and the demo use -- restic and restic's REST
# server -- into a cache outside the clone, keyed by name and version. A no-op when
# they are there. Prints the bin directory on stdout (last line).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RESTIC_VERSION=v0.19.1
REST_SERVER_VERSION=$(sed -n "s|^require github.com/restic/rest-server \\(v[0-9.]*\\)|\\1|p" "$here/rest-server/go.mod")
cache_root=${STASH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stash}
bindir="$cache_root/tools/restic-$RESTIC_VERSION-rest-server-$REST_SERVER_VERSION/bin"
need() { [ -x "$bindir/$1" ] || return 0; return 1; }
if need restic || need rest-server; then
  command -v go >/dev/null || { echo "tools/build.sh: the Go toolchain is needed to build restic" >&2; exit 1; }
  mkdir -p "$bindir"
  if need restic; then
    echo "tools/build.sh: building restic $RESTIC_VERSION (2-5 minutes cold)" >&2
    CGO_ENABLED=0 GOBIN="$bindir" go install -trimpath -ldflags "-s -w" \
      "github.com/restic/restic/cmd/restic@$RESTIC_VERSION"
  fi
  if need rest-server; then
    echo "tools/build.sh: building rest-server $REST_SERVER_VERSION" >&2
    (cd "$here/rest-server" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
      -o "$bindir/rest-server" github.com/restic/rest-server/cmd/rest-server)
  fi
fi
echo "$bindir"
