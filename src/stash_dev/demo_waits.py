"""The demo's waits on the cluster: poll until an object reaches the state the next step
needs (CRDs established, a namespace gone, an invoker Ready, a pod with the injected
container, a session finished, a Job's pod run), or fail the step with what it waited
for. Used by `stash_dev.demo`.

Not for: tests (they have `tests.support.cluster.eventually`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from stash.api.crdgen import crds
from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS, RESTORESESSIONS
from stash.kube.client import JSON, Conflict, Kube, NotFound, Resource
from stash.kube.resources import CRDS, JOBS, NAMESPACES, PODS, PVCS
from stash_dev.podrunner import PodRunner

NS = "demo"
T = TypeVar("T")


class DemoFailed(Exception):
    """A demo step did not get what it needed; `log` is what explains it (a pod's log)."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


async def until(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 120) -> T:
    """Poll `probe` every half second until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.5)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")


async def install_crds(kube: Kube) -> None:
    """Create (or replace) every CRD and wait until all are established."""
    for crd in crds():
        try:
            await kube.create(CRDS, crd)
        except Conflict:
            live = await kube.get(CRDS, crd["metadata"]["name"])
            crd["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            await kube.replace(CRDS, crd)

    async def established() -> bool:
        for crd in crds():
            live = await kube.get(CRDS, crd["metadata"]["name"])
            conditions = (live.get("status") or {}).get("conditions") or []
            if {c["type"]: c["status"] for c in conditions}.get("Established") != "True":
                return False
        return True

    await until(established, "the CRDs to be established", 60)


async def fresh_namespace(kube: Kube) -> None:
    """Delete namespace `demo` if it exists, wait until it is gone, create it again."""
    with contextlib.suppress(NotFound):
        await kube.delete(NAMESPACES, NS)

    async def gone() -> bool:
        try:
            await kube.get(NAMESPACES, NS)
        except NotFound:
            return True
        return False

    await until(gone, f"the previous namespace {NS} to go", 120)
    await kube.create(NAMESPACES, {"metadata": {"name": NS}})


async def invoker_ready(kube: Kube, name: str) -> None:
    """Wait until BackupConfiguration `name` is in phase Ready."""

    async def probe() -> bool:
        bc = await kube.get(BACKUPCONFIGURATIONS, name, NS)
        return (bc.get("status") or {}).get("phase") == "Ready"

    await until(probe, f"BackupConfiguration {name} to be Ready", 60)


async def pod_with(kube: Kube, container: str, field: str) -> JSON:
    """The one scheduled web pod whose `field` (containers / initContainers) has
    `container`, once the previous pods are gone."""

    async def probe() -> JSON | None:
        pods: list[JSON] = (await kube.list(PODS, NS, label_selector="app=web"))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        for p in live:
            names = [c["name"] for c in p["spec"].get(field) or []]
            if container in names and p["spec"].get("nodeName") and len(live) == 1:
                return p
        return None

    return await until(probe, f"a web pod with the injected {container}", 120)


async def _finished(kube: Kube, res: Resource, name: str, phases: tuple[str, ...]) -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(res, name, NS)
        return obj if (obj.get("status") or {}).get("phase") in phases else None

    return await until(probe, f"{res.kind} {name} to finish", 180)


async def session_done(kube: Kube, name: str) -> JSON:
    """BackupSession `name` once it Succeeded, Failed or was Skipped."""
    return await _finished(kube, BACKUPSESSIONS, name, ("Succeeded", "Failed", "Skipped"))


async def restore_done(kube: Kube, name: str) -> JSON:
    """RestoreSession `name` once it Succeeded, Failed or ended Unknown."""
    return await _finished(kube, RESTORESESSIONS, name, ("Succeeded", "Failed", "Unknown"))


async def run_job(kube: Kube, runner: PodRunner, job: str) -> None:
    """Wait for Job `job` and its scheduled pod; run the pod's containers to the end,
    reporting their exit codes into its status (the stand-in kubelet never runs them)."""

    async def exists() -> bool:
        try:
            await kube.get(JOBS, job, NS)
        except NotFound:
            return False
        return True

    async def scheduled() -> JSON | None:
        pods = (await kube.list(PODS, NS, label_selector=f"job-name={job}"))["items"]
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    await until(exists, f"Job {job}", 60)
    pod = await until(scheduled, f"the pod of Job {job}", 60)
    for container in await runner.run_pod(pod, report_status=True):
        await container.wait(timeout=300)


async def bound_claim(kube: Kube, claim: str) -> JSON | None:
    """The claim once it is Bound, else None."""
    pvc = await kube.get(PVCS, claim, NS)
    return pvc if (pvc.get("status") or {}).get("phase") == "Bound" else None
