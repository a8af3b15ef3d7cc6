"""Container states written back into the Pod's status, as a kubelet reports them.

For: `containerStatuses[]` / `initContainerStatuses[]` (running, or terminated with exit
code and reason), the pod phase that follows (`pod_phase`, pure) and the Ready
conditions, patched with the Pod's resourceVersion and retried on conflict, so Jobs and
controllers see a pod finish. Not for: restarting containers (a restartPolicy of
Always or OnFailure keeps a finished container's pod Running, nothing more), probes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from stash.kube.client import Conflict, Kube
from stash_dev.podrunner.objects import PODS, PodRunnerError

JSON = dict[str, Any]


def now() -> str:
    """An RFC 3339 timestamp, as the apiserver stores them."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_state(started_at: str) -> JSON:
    """A container state: running since `started_at`."""
    return {"running": {"startedAt": started_at}}


def terminated_state(exit_code: int, started_at: str, message: str = "") -> JSON:
    """A container state: terminated with `exit_code` (reason as a kubelet words it)."""
    reason = "StartError" if message else ("Completed" if exit_code == 0 else "Error")
    term: JSON = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at,
        "finishedAt": now(),
    }
    if message:
        term["message"] = message
    return {"terminated": term}


def pod_phase(spec: JSON, status: JSON) -> str:
    """The phase a kubelet derives from container statuses and the restart policy."""
    policy = spec.get("restartPolicy", "Always")
    inits = {s["name"]: s for s in status.get("initContainerStatuses") or []}
    for c in spec.get("initContainers") or []:
        term = (inits.get(c["name"], {}).get("state") or {}).get("terminated")
        if term and term.get("exitCode") != 0 and policy == "Never":
            return "Failed"
    mains = {s["name"]: s for s in status.get("containerStatuses") or []}
    terms = [
        (mains.get(c["name"], {}).get("state") or {}).get("terminated")
        for c in spec.get("containers") or []
    ]
    current = str(status.get("phase") or "Pending")
    if not terms or not all(terms):
        return "Running" if current == "Pending" and any(mains) else current
    failed = any(t.get("exitCode") != 0 for t in terms if t)
    if policy == "Never":
        return "Failed" if failed else "Succeeded"
    if policy == "OnFailure" and not failed:
        return "Succeeded"
    return "Running"


def _entry(container: JSON, state: JSON, pid: int | None) -> JSON:
    running = "running" in state
    entry: JSON = {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "ready": running,
        "started": running,
        "restartCount": 0,
        "state": state,
    }
    if pid is not None:
        entry["containerID"] = f"podrunner://{pid}"
    return entry


def _conditions(status: JSON, ready: bool) -> list[JSON]:
    out = []
    stamp = now()
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Ready", "ContainersReady"):
            value = "True" if ready else "False"
            if cond.get("status") != value:
                cond = {**cond, "status": value, "lastTransitionTime": stamp}
        out.append(cond)
    return out


async def report(
    kube: Kube, pod: JSON, container: JSON, init: bool, state: JSON, pid: int | None
) -> None:
    """Write `container`'s `state` into the stored Pod's status (conflicts retried)."""
    meta = pod["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    key = "initContainerStatuses" if init else "containerStatuses"
    for _ in range(20):
        current = await kube.get(PODS, name, ns)
        if current["metadata"]["uid"] != uid:
            raise PodRunnerError(f"pod {ns}/{name} was replaced; not reporting its status")
        status = dict(current.get("status") or {})
        entries = [e for e in status.get(key) or [] if e.get("name") != container["name"]]
        entries.append(_entry(container, state, pid))
        order = [c["name"] for c in current["spec"].get("initContainers" if init else "containers")]
        entries.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else len(order))
        status[key] = entries
        status["phase"] = pod_phase(current["spec"], status)
        mains = status.get("containerStatuses") or []
        ready = bool(mains) and all(e.get("ready") for e in mains)
        status["conditions"] = _conditions(status, ready)
        patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}}
        patch["status"] = status
        try:
            await kube.patch(PODS, name, patch, ns, subresource="status")
            return
        except Conflict:
            await asyncio.sleep(0.1)
    raise PodRunnerError(f"pod {ns}/{name}: status kept conflicting; gave up reporting")


async def wait_until_started(kube: Kube, pod: JSON, timeout: float = 10.0) -> None:
    """Wait (bounded) for the node's kubelet to take the pod out of Pending."""
    meta = pod["metadata"]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        current = await kube.get(PODS, meta["name"], meta["namespace"])
        status = current.get("status") or {}
        # Reported by the kubelet: out of Pending, or container statuses written (the
        # stand-in kubelet leaves Job pods Pending with waiting containers).
        if status.get("phase", "Pending") != "Pending" or status.get("containerStatuses"):
            return
        await asyncio.sleep(0.2)


async def with_pod_ip(kube: Kube, pod: JSON, timeout: float = 10.0) -> JSON:
    """`pod` once its node's kubelet has given it an IP (a kubelet starts no container
    before the pod's sandbox has one), re-read; as given when none comes in `timeout`."""
    meta = pod["metadata"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    current = pod
    while not (current.get("status") or {}).get("podIP"):
        if loop.time() >= deadline:
            return pod
        await asyncio.sleep(0.2)
        current = await kube.get(PODS, meta["name"], meta["namespace"])
        if current["metadata"]["uid"] != meta["uid"]:
            raise PodRunnerError(f"pod {meta['namespace']}/{meta['name']} was replaced")
    return current
