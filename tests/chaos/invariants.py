"""What must hold after every chaos run, whatever was killed.

* no session is non-final past its deadline (plus a grace for the reconcile);
* every snapshot a session reports exists, and every snapshot in the repository was
  reported by one of its invoker's sessions (nothing lost, nothing phantom);
* a Succeeded RestoreSession gave back exactly the files backed up (no false success);
* `restic check` is clean and no lock is left once the follow-up session is done.

Each check returns the violations it found as sentences (empty: it holds). Not for:
injecting faults or deciding what a run is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

from stash.contract.phases import FINAL_RESTORE_PHASES, FINAL_SESSION_PHASES
from stash.contract.resources import BACKUPSESSIONS, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.restic import ResticError
from tests.chaos.jobworld import JobWorld
from tests.chaos.world import FILES, World, read_tree

#: Seconds a session may stay non-final after its deadline (one reconcile round).
DEADLINE_GRACE = 30.0


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


async def overdue_sessions(kube: Kube, ns: str, default_timeout: float) -> list[str]:
    """Sessions still non-final DEADLINE_GRACE seconds after their deadline."""
    now = dt.datetime.now(dt.UTC)
    found = []
    for res, final in (
        (BACKUPSESSIONS, FINAL_SESSION_PHASES),
        (RESTORESESSIONS, FINAL_RESTORE_PHASES),
    ):
        for obj in (await kube.list(res, ns))["items"]:
            status = obj.get("status") or {}
            if status.get("phase") in final:
                continue
            deadline_s = status.get("sessionDeadline")
            created = _parse(obj["metadata"]["creationTimestamp"])
            deadline = (
                _parse(deadline_s)
                if deadline_s
                else created + dt.timedelta(seconds=default_timeout)
            )
            if now > deadline + dt.timedelta(seconds=DEADLINE_GRACE):
                found.append(
                    f"stuck: {res.kind} {obj['metadata']['name']} is {status.get('phase')!r} "
                    f"{(now - deadline).total_seconds():.0f}s past its deadline"
                )
    return found


#: How a host's error names a snapshot it made but does not count (an incomplete one).
_NAMED_IN_ERROR = re.compile(r"\bsnapshot ([0-9a-f]{8})\b")


def reported_snapshots(session: JSON) -> dict[str, str]:
    """Snapshot short id -> the phase of the host that reported it (in its snapshots,
    or named in its error: an incomplete snapshot the session says it does not count)."""
    out: dict[str, str] = {}
    for target in (session.get("status") or {}).get("targets") or []:
        for host in target.get("stats") or []:
            for snap in host.get("snapshots") or []:
                if snap.get("name"):
                    out[str(snap["name"])[:8]] = str(host.get("phase"))
            for sid in _NAMED_IN_ERROR.findall(str(host.get("error") or "")):
                out.setdefault(sid, f"{host.get('phase')} (named in its error)")
    return out


async def snapshots_match_sessions(kube: Kube, world: World) -> tuple[list[str], set[str]]:
    """(lost, phantom): lost snapshots (reported by a Succeeded session, not stored) as
    sentences, and the short ids of phantom ones (stored, never reported by a session
    of the world's invoker)."""
    sessions = [
        s
        for s in (await kube.list(BACKUPSESSIONS, world.namespace))["items"]
        if any(o.get("name") == world.invoker for o in s["metadata"].get("ownerReferences", []))
    ]
    phases = {s["metadata"]["name"]: (s.get("status") or {}).get("phase") for s in sessions}
    reported: dict[str, str] = {}
    for s in sessions:
        for sid in reported_snapshots(s):
            reported[sid] = s["metadata"]["name"]
    try:
        stored = {s.short_id[:8] for s in await world.restic().snapshots()}
    except ResticError as exc:
        return [f"restic snapshots failed on {world.key}: {exc}"], set()
    lost = [
        f"lost: {name} (Succeeded) reports snapshot {sid}, not in {world.key}"
        for sid, name in reported.items()
        if sid not in stored and phases.get(name) == "Succeeded"
    ]
    return lost, stored - set(reported)


async def restore_gave_back(kube: Kube, world: JobWorld, session: JSON) -> list[str]:
    """A Succeeded RestoreSession's PVC holds exactly FILES."""
    from tests.e2e.jobs import claim_dir

    if (session.get("status") or {}).get("phase") != "Succeeded":
        return []
    name = session["metadata"]["name"]
    restored: Path = await claim_dir(kube, world.namespace, world.restored[name])
    got = read_tree(restored)
    if got != FILES:
        return [
            f"false success: {name} Succeeded but restored {sorted(got)} "
            f"(expected {sorted(FILES)}, same bytes)"
        ]
    return []


async def repository_clean(world: World) -> list[str]:
    """`restic check` passes and no lock is left."""
    restic = world.restic()
    problems = []
    try:
        locks = await restic.lock_ids()
        for _ in range(20):  # post-backup work may still hold one for a moment
            if not locks:
                break
            await asyncio.sleep(1)
            locks = await restic.lock_ids()
        if locks:
            problems.append(f"lock left: {len(locks)} lock(s) in {world.key}: {locks}")
        check = await restic.check()
        if not check.ok:
            problems.append(f"restic check failed on {world.key}: {list(check.messages[-3:])}")
    except ResticError as exc:
        problems.append(f"restic failed on {world.key}: {exc}")
    return problems
