#!/usr/bin/env bash
# Build the pinned Go tools of the database addon tests into a cache outside the clone,
# keyed by their modules' files (a no-op when they are there): FerretDB (the MongoDB
# server, our wrapper in ferretdb/), mongodump + mongorestore (mongo-tools/) and
# redis-dump-go (redis-dump-go/). Prints the bin directory on stdout (last line).
# Redis itself (redis-server, redis-cli) is Debian's (the Makefile's DEB_PACKAGES).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${STASH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stash}
modules=(ferretdb mongo-tools redis-dump-go)
key=$(cd "$here" && cat "${modules[@]/%//go.mod}" "${modules[@]/%//go.sum}" ferretdb/main.go \
  | sha256sum | cut -c1-12)
bindir="$cache_root/tools/databases-$key/bin"
tools=(ferretdb mongodump mongorestore redis-dump-go)
missing=0
for t in "${tools[@]}"; do [ -x "$bindir/$t" ] || missing=1; done
if [ "$missing" = 1 ]; then
  command -v go >/dev/null || { echo "tools/build-databases.sh: the Go toolchain is needed" >&2; exit 1; }
  mkdir -p "$bindir"
  echo "tools/build-databases.sh: building ferretdb, mongodump, mongorestore, redis-dump-go (3-6 minutes cold)" >&2
  build() { (cd "$here/$1" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bindir/$2.tmp" "$3" \
    && mv "$bindir/$2.tmp" "$bindir/$2"); }
  build ferretdb ferretdb .
  # The checksum database does not know mongo-tools' pseudo-versions; go.sum (committed)
  # is what the download is checked against.
  export GONOSUMDB=github.com/mongodb/mongo-tools
  build mongo-tools mongodump github.com/mongodb/mongo-tools/mongodump/main
  build mongo-tools mongorestore github.com/mongodb/mongo-tools/mongorestore/main
  build redis-dump-go redis-dump-go github.com/yannh/redis-dump-go
fi
echo "$bindir"
