"""stash's dev tooling: the local Kubernetes control plane for tests and `stash dev`
(`make run`), its stand-in kubelet, the pod runner and the demo.

Starts the `ktc` binary built by tests/cluster/build.sh (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler from the Kubernetes Go module) plus a stand-in
kubelet, on loopback only, with its own PKI and kubeconfig. Only works from a source
checkout and is never part of the operator's wheel or image: it is the separate
`stash-dev` distribution (dev/pyproject.toml). Nothing in `stash` imports it.
"""

from stash_dev.controlplane import ControlPlane, ControlPlaneError

__all__ = ["ControlPlane", "ControlPlaneError"]
