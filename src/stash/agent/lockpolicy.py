"""Which restic locks an agent may remove before it uses a repository.

What it is for: `clear_stale_locks()` applies `stash.restic.locks.remove_stale_locks`
with what only the agent knows, so that the session after a crash succeeds without a
person running `kubectl stash unlock`. A lock is removed when its owner is provably
gone:

* it was taken by a restic run of this pod that was killed (the pod's `RunLedger` still
  holds that PID, the lock is no older than the run, and no restic with that PID is
  running) — e.g. the sidecar was killed mid-backup and restarted; or
* its host and PID are the holder and one of the published restic PIDs of a heartbeat
  Lease (see `leases`) whose BackupSession is final or deleted, and the lock is no
  newer than that heartbeat's last renewal plus two renew periods: the executor that
  held it stopped renewing (killed, node gone) and the operator failed its host. A
  live executor renews both, so its locks are always newer than its heartbeat.

A host name alone proves nothing: two `postgres-0` pods in different namespaces may
share a repository, and the other one's PID is never running here.

Any age suffices in both cases (the restic module's default 10-minute floor exists for
locks whose owner we know nothing about; these we know). Every other lock stays; a
person removes it with `kubectl stash unlock`.

Not for: the lock rules themselves (`stash.restic.locks`) or retrying a command that
found the repository locked (its caller).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from stash.agent.leases import HEARTBEAT_LABEL_SESSION, HEARTBEAT_RESTIC_PIDS, RENEW_EVERY
from stash.contract import phases as P
from stash.contract.resources import BACKUPSESSIONS
from stash.kube.client import JSON, Kube, KubeError, NotFound
from stash.kube.leader import LEASES
from stash.restic import LockCleanup, LockInfo, Restic, ResticError, remove_stale_locks
from stash.restic.ledger import RunLedger

__all__ = ["Beat", "clear_stale_locks", "owner_gone"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Beat:
    """A heartbeat Lease as the lock judgement needs it."""

    holder: str
    renewed: dt.datetime
    session_over: bool
    pids: frozenset[int] = frozenset()


def owner_gone(lock: LockInfo, beats: Sequence[Beat]) -> bool:
    """Whether `lock` belongs to an executor whose heartbeat stopped in a final session:
    its host and PID hold such a heartbeat and the lock is no newer than that
    heartbeat's last renewal plus two renew periods (a live executor's locks are always
    newer)."""
    margin = dt.timedelta(seconds=2 * RENEW_EVERY)
    return any(
        b.session_over
        and b.holder == lock.hostname
        and lock.pid in b.pids
        and lock.time <= b.renewed + margin
        for b in beats
    )


def _session_of(lease: JSON) -> str:
    """The session of a heartbeat: its owner's name (a label value may be shortened)."""
    meta = lease["metadata"]
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "BackupSession" and owner.get("name"):
            return str(owner["name"])
    return str((meta.get("labels") or {}).get(HEARTBEAT_LABEL_SESSION, ""))


async def _heartbeats(kube: Kube, namespace: str) -> list[Beat]:
    leases = await kube.list(LEASES, namespace, label_selector=HEARTBEAT_LABEL_SESSION)
    beats: list[Beat] = []
    phases: dict[str, bool] = {}
    for lease in leases.get("items") or []:
        spec = lease.get("spec") or {}
        session = _session_of(lease)
        renewed = spec.get("renewTime") or spec.get("acquireTime")
        if not session or not renewed or not spec.get("holderIdentity"):
            continue
        if session not in phases:
            try:
                obj = await kube.get(BACKUPSESSIONS, session, namespace)
                phase = (obj.get("status") or {}).get("phase")
                phases[session] = phase in P.FINAL_SESSION_PHASES
            except NotFound:
                phases[session] = True
        published = (lease["metadata"].get("annotations") or {}).get(HEARTBEAT_RESTIC_PIDS) or ""
        beats.append(
            Beat(
                holder=str(spec["holderIdentity"]),
                renewed=dt.datetime.fromisoformat(str(renewed).replace("Z", "+00:00")),
                session_over=phases[session],
                pids=frozenset(int(p) for p in published.split(",") if p.isdigit()),
            )
        )
    return beats


async def clear_stale_locks(
    kube: Kube, restic: Restic, namespace: str, ledger: RunLedger | None = None
) -> LockCleanup | None:
    """Remove the repository's locks whose owners are provably gone (module docstring).

    Best effort: a failure to list or remove locks is logged and None returned; the
    restic command that follows then reports the lock if it still matters.
    """
    try:
        if not await restic.lock_ids():
            return None
        try:
            beats = await _heartbeats(kube, namespace)
        except (KubeError, aiohttp.ClientError, TimeoutError) as exc:
            log.info("heartbeats unreadable (%s); judging locks by this pod only", exc)
            beats = []
        ledger = ledger or restic.options.run_ledger
        cleanup = await remove_stale_locks(
            restic,
            min_age=dt.timedelta(0),
            session_final=lambda lock: owner_gone(lock, beats),
            owned=ledger.may_own if ledger is not None else lambda _lock: False,
        )
    except ResticError as exc:
        log.warning("could not check %s for stale locks: %s", restic.target.display, exc)
        return None
    for lock in cleanup.removed:
        log.info(
            "removed stale lock %s (pid %d on %s) from %s",
            lock.id[:8],
            lock.pid,
            lock.hostname,
            restic.target.display,
        )
    return cleanup
