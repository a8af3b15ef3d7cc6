"""The local Kubernetes control plane for tests and `stash dev` (`make run`).

Starts the `ktc` binary built by tests/cluster/build.sh (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler from the Kubernetes Go module) plus a stand-in
kubelet, on loopback only, with its own PKI and kubeconfig. Not for production use and
not used by the operator itself.
"""

from stash.devcluster.controlplane import ControlPlane, ControlPlaneError

__all__ = ["ControlPlane", "ControlPlaneError"]
