"""The local pod runner: a Pod's containers as processes, with the Pod's view of the world.

There is no container runtime here, so tests and the `make run` demo run what a pod
spec says as local processes: exact command and args (`$(VAR)` expanded), env as a
kubelet builds it, each volume bind-mounted at its mountPath inside the process's own
mount namespace (`unshare`, as root), and the pod's ServiceAccount token, CA and
namespace at /var/run/secrets/kubernetes.io/serviceaccount, so in-cluster config and
RBAC work as in a real pod. Nothing is special-cased for any image or workload.

    runner = PodRunner(kube, entrypoints={"stash:dev": [".venv/bin/stash"]})
    handle = await runner.run(pod, "app", volumes={"data": tmp}, report_status=True)
    code = await handle.wait()

Not for: production use, images, restarts, probes, lifecycle hooks, networking.
"""

from stash_dev.podrunner.objects import PodRunnerError
from stash_dev.podrunner.process import RunningContainer, namespace_support
from stash_dev.podrunner.runner import PodRunner

__all__ = ["PodRunner", "PodRunnerError", "RunningContainer", "namespace_support"]
