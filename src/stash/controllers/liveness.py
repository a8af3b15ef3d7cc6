"""Is an executor alive? Heartbeats judged by what *we* saw change; Jobs by their pods.

What it is for:

* `ChangeClock` — how long this process has seen a value unchanged, on its own
  monotonic clock. A heartbeat Lease's `renewTime` is written by the agent's node; the
  operator never compares it with its own clock (they may disagree by minutes), it
  notes when the value last changed, as leader election does (`stash.kube.leader`).
* `silent_hosts` — hosts whose heartbeat has not changed for the timeout;
  `failed_with_snapshots` — failed hosts' errors naming what their heartbeat recorded.
* `job_problem` — why a backup or restore Job failed (final at once) or why its pod
  cannot start (not created, not schedulable, image not pulled, container not
  created); the reconcilers fail the host when a start problem lasts
  `executor_start_timeout` seconds, with the pod's or the Job controller's reason.

Pure except for the clock the `ChangeClock` is given. Not for: reading the apiserver
or writing status (the session reconcilers do both).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stash.contract.sessions import (
    HEARTBEAT_HOST_ANNOTATION,
    HEARTBEAT_LABEL_HOST,
    heartbeat_snapshots,
    written_note,
)

JSON = Mapping[str, Any]

#: Waiting reasons of a container that will not start without someone changing
#: something (an image, a Secret, a ConfigMap); ContainerCreating and PodInitializing
#: are normal steps and never count.
STUCK_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
#: The Job annotation naming the host (restic --host) the Job backs up or restores.
JOB_HOST_ANNOTATION = HEARTBEAT_HOST_ANNOTATION


class ChangeClock:
    """When values were last seen to change, per (group, key), on a monotonic clock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[str, dict[str, tuple[object, float]]] = {}

    def unchanged_for(self, group: str, key: str, value: object) -> float:
        """Seconds `value` has been seen unchanged for `key` (0 when new or changed)."""
        now = self.clock()
        entries = self._seen.setdefault(group, {})
        old = entries.get(key)
        if old is None or old[0] != value:
            entries[key] = (value, now)
            return 0.0
        return now - old[1]

    def forget(self, group: str, key: str | None = None) -> None:
        """Drop one key of `group`, or the whole group (its session ended)."""
        if key is None:
            self._seen.pop(group, None)
        else:
            self._seen.get(group, {}).pop(key, None)

    def keep_only(self, group: str, keys: Iterable[str]) -> None:
        """Drop the keys of `group` not in `keys` (their objects are gone)."""
        wanted = set(keys)
        entries = self._seen.get(group, {})
        for key in [k for k in entries if k not in wanted]:
            del entries[key]


def heartbeat_host(lease: JSON) -> str:
    """The host a heartbeat Lease is for: the annotation, else (older agents) the label."""
    meta = lease.get("metadata") or {}
    host = (meta.get("annotations") or {}).get(HEARTBEAT_HOST_ANNOTATION)
    return str(host or (meta.get("labels") or {}).get(HEARTBEAT_LABEL_HOST) or "")


def silent_hosts(
    leases: Sequence[JSON],
    reported: set[str],
    seen: ChangeClock,
    group: str,
    timeout: float,
) -> list[tuple[str, str]]:
    """(host, error) of hosts whose heartbeat `renewTime` we have seen unchanged for
    `timeout` seconds, among those that have not reported; updates `seen`."""
    dead: list[tuple[str, str]] = []
    keys = []
    for lease in leases:
        meta = lease.get("metadata") or {}
        spec = lease.get("spec") or {}
        host = heartbeat_host(lease)
        key = str(meta.get("uid") or meta.get("name"))
        keys.append(key)
        renewed = spec.get("renewTime") or spec.get("acquireTime")
        silent = seen.unchanged_for(group, key, renewed)
        if not host or host in reported or not renewed or silent < timeout:
            continue
        error = (
            f"the backup executor {spec.get('holderIdentity') or '?'} stopped renewing "
            f"its heartbeat (unchanged for {silent:.0f}s; killed or crashed mid-backup); "
            "the next session will clear the stale repository lock"
        )
        error += written_note(heartbeat_snapshots(meta.get("annotations")), "before it stopped ")
        dead.append((host, error))
    seen.keep_only(group, keys)
    return dead


def failed_with_snapshots(
    failed: Sequence[tuple[str, str]], leases: Sequence[JSON]
) -> list[tuple[str, str]]:
    """(host, error) of `failed` hosts, each error naming the snapshots the host's
    heartbeat Lease (among `leases`) records: written before its executor failed."""
    written = {
        heartbeat_host(lease): heartbeat_snapshots((lease.get("metadata") or {}).get("annotations"))
        for lease in leases
    }
    return [
        (host, error + written_note(written.get(host) or [], "before it failed "))
        for host, error in failed
    ]


@dataclass(frozen=True)
class JobProblem:
    """What is wrong with a Job: `final` (it failed) or not (its pod cannot start)."""

    final: bool
    message: str


def _conditions(obj: JSON) -> dict[str, Mapping[str, Any]]:
    return {
        str(c.get("type")): c
        for c in (obj.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    }


def _container_statuses(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def _terminated(pod: JSON) -> str:
    """How a failed pod's containers ended: `container: reason (exit N): message`."""
    status = pod.get("status") or {}
    out = []
    for c in _container_statuses(status):
        done = (c.get("state") or {}).get("terminated") or {}
        if done and done.get("exitCode") not in (None, 0):
            text = f"container {c.get('name')}: {done.get('reason') or 'Error'}"
            text += f" (exit {done.get('exitCode')})"
            if done.get("message"):
                text += f": {str(done['message']).strip()[:300]}"
            out.append(text)
    if not out and status.get("reason"):
        out.append(f"{status['reason']}: {status.get('message') or ''}".strip(": "))
    return "; ".join(out)


def _cannot_start(pod: JSON) -> str | None:
    """Why a Pending pod cannot start (None: it is on its way, or started)."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name")
    if status.get("phase") not in (None, "Pending"):
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            why = cond.get("message") or cond.get("reason") or "not scheduled"
            return f"pod {name} cannot be scheduled: {why}"
    for c in _container_statuses(status):
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_WAITING:
            text = f"container {c.get('name')} of pod {name}: {waiting['reason']}"
            return text + (f": {waiting['message']}" if waiting.get("message") else "")
    return None


def job_problem(job: JSON, pods: Sequence[JSON], failed_create: str | None) -> JobProblem | None:
    """What is wrong with `job` (its `pods`; the Job controller's last FailedCreate
    message, if any), or None while it runs or is on its way."""
    name = (job.get("metadata") or {}).get("name")
    conds = _conditions(job)
    failed = conds.get("Failed")
    if failed is not None:
        why = f"{failed.get('reason') or 'Failed'}: {failed.get('message') or ''}".strip(": ")
        details = "; ".join(t for t in (_terminated(p) for p in pods) if t)
        return JobProblem(True, f"Job {name} failed ({why})" + (f": {details}" if details else ""))
    if "Complete" in conds:
        return JobProblem(True, f"Job {name} completed without reporting this host")
    if not pods:
        if failed_create:
            return JobProblem(False, f"the pod of Job {name} cannot be created: {failed_create}")
        return None
    problems = [p for p in (_cannot_start(pod) for pod in pods) if p]
    if len(problems) == len(pods):
        return JobProblem(False, problems[0])
    return None


def job_host(job: JSON, default: str = "host-0") -> str:
    """The host a Job runs for (its annotation; `default` for Jobs made before it)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(JOB_HOST_ANNOTATION) or default)
