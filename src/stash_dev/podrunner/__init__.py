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

A long-lived container (a server, an operator) keeps running in the background until
its handle's `stop()`, `release(pod)` or `close()`; it shares the host's network and is
reached at the pod's IP (`status.podIP`, an address of this host the stand-in kubelet
reported, which a Service's EndpointSlice leads to) when it binds that address or
0.0.0.0. While it runs, `kubectl exec` into it works: the runner records its process
(registry.py) and the stand-in kubelet runs the command inside it (containerexec.py).

Not for: production use, images, restarts, probes, lifecycle hooks, network isolation.
"""

from stash_dev.podrunner.objects import PodRunnerError
from stash_dev.podrunner.process import RunningContainer, namespace_support
from stash_dev.podrunner.runner import PodRunner

__all__ = ["PodRunner", "PodRunnerError", "RunningContainer", "namespace_support"]
