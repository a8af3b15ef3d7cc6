#!/usr/bin/env bash
# Fetch the Elasticsearch/OpenSearch addon tests' server and dump tool into a cache outside
# the clone, keyed by their pins (a no-op when they are there):
# * OpenSearch $OPENSEARCH_VERSION, the real distribution's "integ-test-zip" from Maven
#   Central (bin/opensearch; runs on the default Java 17; no plugins, plain HTTP), unpacked
#   into <cache>/opensearch (the tests run a hard-linked copy of it as the user `nobody`:
#   OpenSearch refuses to run as root);
# * npm elasticdump, `npm ci` from elasticdump/package-lock.json into <cache>/elasticdump
#   (its bin/ holds elasticdump and multielasticdump).
# Prints the cache directory on stdout (last line).
set -euo pipefail
OPENSEARCH_VERSION=2.19.6
here=$(cd "$(dirname "$0")" && pwd)
cache_root=${STASH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stash}
key=$( (echo "$OPENSEARCH_VERSION"; cat "$here/elasticdump/package.json" "$here/elasticdump/package-lock.json") \
  | sha256sum | cut -c1-12)
dir="$cache_root/tools/elasticsearch-$key"
os_home="$dir/opensearch"
dump_home="$dir/elasticdump"
if [ ! -x "$os_home/bin/opensearch" ]; then
  for t in mvn java unzip; do
    command -v "$t" >/dev/null || { echo "tools/build-elasticsearch.sh: $t is needed" >&2; exit 1; }
  done
  echo "tools/build-elasticsearch.sh: fetching OpenSearch $OPENSEARCH_VERSION from Maven Central" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mvn -q -B dependency:copy \
    -Dartifact="org.opensearch.distribution.integ-test-zip:opensearch:$OPENSEARCH_VERSION:zip" \
    -DoutputDirectory="$tmp" >&2
  unzip -q "$tmp/opensearch-$OPENSEARCH_VERSION.zip" -d "$tmp/x"
  mkdir -p "$dir"
  rm -rf "$os_home"
  mv "$tmp/x/opensearch-$OPENSEARCH_VERSION" "$os_home.tmp"
  mv "$os_home.tmp" "$os_home"
fi
if [ ! -x "$dump_home/node_modules/.bin/elasticdump" ]; then
  command -v npm >/dev/null || { echo "tools/build-elasticsearch.sh: npm (Node >= 18) is needed" >&2; exit 1; }
  echo "tools/build-elasticsearch.sh: installing elasticdump (npm ci)" >&2
  rm -rf "$dump_home.tmp"
  mkdir -p "$dump_home.tmp"
  cp "$here/elasticdump/package.json" "$here/elasticdump/package-lock.json" "$dump_home.tmp/"
  (cd "$dump_home.tmp" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
  rm -rf "$dump_home"
  mv "$dump_home.tmp" "$dump_home"
fi
echo "$dir"
