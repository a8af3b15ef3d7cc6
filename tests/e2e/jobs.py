"""End-to-end helpers: a PVC's host directory, an object's existence, a Job's pod run."""

from __future__ import annotations

from pathlib import Path

from stash.kube.client import JSON, Kube, KubeError, Resource
from stash.kube.resources import JOBS, PODS, PVCS, PVS
from stash_dev.podrunner import PodRunner
from tests.support.cluster import eventually


async def claim_dir(kube: Kube, ns: str, claim: str) -> Path:
    """The host directory of a bound PVC (the stand-in kubelet's local-path PVs)."""

    async def bound() -> JSON | None:
        pvc = await kube.get(PVCS, claim, ns)
        return pvc if (pvc.get("status") or {}).get("phase") == "Bound" else None

    pvc = await eventually(bound, timeout=30, what=f"PVC {claim} bound")
    pv = await kube.get(PVS, pvc["spec"]["volumeName"])
    return Path(pv["spec"]["hostPath"]["path"])


async def exists(kube: Kube, res: Resource, name: str, ns: str) -> bool:
    """Whether the object exists."""
    try:
        await kube.get(res, name, ns)
    except KubeError:
        return False
    return True


async def run_job(kube: Kube, runner: PodRunner, ns: str, job: str) -> None:
    """Run the containers of the Job's pod with the pod runner; all must exit 0."""

    async def scheduled() -> JSON | None:
        pods = (await kube.list(PODS, ns, label_selector=f"job-name={job}"))["items"]
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    pod = await eventually(scheduled, timeout=60, what=f"Job {job}'s pod scheduled")
    for container in await runner.run_pod(pod, report_status=True):
        code = await container.wait(timeout=180)
        assert code == 0, f"{container.container} exited {code}:\n{container.logs()[-3000:]}"

    async def complete() -> bool:
        status = (await kube.get(JOBS, job, ns)).get("status") or {}
        return bool(status.get("succeeded"))

    await eventually(complete, timeout=60, what=f"Job {job} complete")
