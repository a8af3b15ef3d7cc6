"""The agent's Leases: a heartbeat while a host backs up, and taking turns on a workload.

What it is for:

* `Heartbeat` — while one host of a BackupSession is being backed up, the executor
  keeps a Lease `stash-hb-<session>-<hostname>` (see `identity.heartbeat_lease_name`)
  with labels `stash.appscode.com/backup-session=<session>` and
  `stash.appscode.com/hostname=<hostname>` (as `contract.sessions.label_value`s; the
  annotation `stash.appscode.com/hostname` keeps the host name in full),
  `holderIdentity` = the pod name, and
  `renewTime` rewritten every 5 s (every second while a renewal fails). It is deleted
  once the host's stats entry is in the session; an executor that dies leaves it
  behind un-renewed, and the operator fails that host once `renewTime` is older than
  its heartbeat timeout. The Lease is owned by the BackupSession, so it goes with it.
  In the job model the backup step leaves the Lease for the `update-status` step,
  which takes it over and deletes it.
* `take_turn(elector, work)` — run `work` once while holding a workload Lease
  (`lock-<kind>-<name>-backup|restore`) through `stash.kube.leader.LeaderElector`, then
  release it so the next pod's turn starts at once (§4.5: StatefulSet and DaemonSet
  pods back up one at a time, so only one restic runs against the repository).

Not for: leader election of a Deployment's pods (the sidecar uses LeaderElector
directly) or deciding when a heartbeat is stale (the operator's rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from stash.agent.identity import heartbeat_lease_name
from stash.contract.sessions import (
    HEARTBEAT_HOST_ANNOTATION,
    HEARTBEAT_LABEL_HOST,
    HEARTBEAT_LABEL_SESSION,
    HEARTBEAT_SNAPSHOTS,
    heartbeat_labels,
    heartbeat_snapshots,
)
from stash.kube.client import JSON, Conflict, Kube, KubeError, NotFound
from stash.kube.leader import LEASES, LeaderElector
from stash.kube.tasks import cancel_and_wait
from stash.restic.ledger import RunLedger

__all__ = [
    "HEARTBEAT_LABEL_HOST",
    "HEARTBEAT_LABEL_SESSION",
    "HEARTBEAT_RESTIC_PIDS",
    "Heartbeat",
    "take_turn",
]

log = logging.getLogger(__name__)

#: Annotation: PIDs of the restic runs the executor started and that have not ended
#: by themselves (`RunLedger`), so a lock can be matched to a dead executor by more
#: than a host name that another namespace's pod may share.
HEARTBEAT_RESTIC_PIDS = "stash.appscode.com/restic-pids"
RENEW_EVERY = 5.0
#: Seconds until a renewal that failed (apiserver unreachable) is tried again.
RETRY_FAILED_RENEWAL = 1.0
LEASE_SECONDS = 15

T = TypeVar("T")


def _micro(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Heartbeat:
    """The heartbeat Lease of one host's backup in one session (module docstring)."""

    def __init__(
        self,
        kube: Kube,
        session: JSON,
        hostname: str,
        identity: str,
        *,
        renew_every: float = RENEW_EVERY,
        ledger: RunLedger | None = None,
    ) -> None:
        meta = session["metadata"]
        self.kube = kube
        self.namespace = str(meta["namespace"])
        self.session = str(meta["name"])
        self.session_uid = str(meta.get("uid") or "")
        self.hostname = hostname
        self.identity = identity
        self.name = heartbeat_lease_name(self.session, hostname)
        self.renew_every = renew_every
        self.ledger = ledger
        self._task: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self._snapshots: dict[str, JSON] = {}
        """Path -> snapshot entry written in this session (ours and earlier holders')."""

    def recorded(self) -> list[JSON]:
        """The snapshot entries this host has written in this session so far, including
        those an earlier executor recorded before it died (known once started)."""
        return list(self._snapshots.values())

    async def record_snapshot(self, entry: JSON) -> None:
        """Record a snapshot on the Lease at once (a successor reuses it, a heartbeat
        failure names it); on an apiserver error the next renewal writes it."""
        self._snapshots[str(entry["path"])] = dict(entry)
        try:
            await self._beat(acquire=False)
        except (KubeError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("heartbeat %s: snapshot not recorded yet: %s", self.name, exc)
            self._poked.set()

    async def holder_elsewhere(self, poll: float = 1.0, watch: float = LEASE_SECONDS) -> str | None:
        """Another executor's identity if it is still renewing this heartbeat (it is
        backing up this host); None when we may take over.

        Alive means we saw its `renewTime` change within one lease period, on our own
        clock (as leader election judges a lease): its node's clock is never compared
        with ours. Watching a Lease someone else holds takes up to `watch` seconds."""
        first = await self._foreign_record()
        if first is None:
            return None
        loop = asyncio.get_running_loop()
        until = loop.time() + watch
        while loop.time() < until:
            await asyncio.sleep(poll)
            now = await self._foreign_record()
            if now is None:
                return None
            if now != first:
                return now[0]
        return None

    async def _foreign_record(self) -> tuple[str, str] | None:
        """(holder, renewTime) of the heartbeat when someone else holds it."""
        try:
            lease = await self.kube.get(LEASES, self.name, self.namespace)
        except NotFound:
            return None
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        if not holder or holder == self.identity:
            return None
        return holder, str(spec.get("renewTime") or "")

    async def start(self) -> None:
        """Create (or take over) the Lease and start renewing it."""
        await self._beat(acquire=True)
        if self.ledger is not None:
            self.ledger.add_listener(self._poked.set)
        self._task = asyncio.create_task(self._renew_loop(), name=f"heartbeat {self.name}")

    async def stop(self, *, delete: bool) -> None:
        """Stop renewing; `delete` once the host's stats are written (else it goes stale)."""
        if self.ledger is not None:
            self.ledger.remove_listener(self._poked.set)
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if delete:
            try:
                await self.kube.delete(LEASES, self.name, self.namespace)
            except (KubeError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning("could not delete heartbeat %s: %s", self.name, exc)

    async def _renew_loop(self) -> None:
        wait = self.renew_every
        while True:
            # renew on time, or at once when restic starts (its PID is published).
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
            # cancellation of stop() when the event fires at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._poked.wait()
            self._poked.clear()
            try:
                await self._beat(acquire=False)
                wait = self.renew_every
            except (KubeError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                # soon again: the operator counts silence from when it sees the
                # apiserver again, so renew as soon as the apiserver answers
                log.warning("heartbeat %s not renewed: %s", self.name, exc)
                wait = min(self.renew_every, RETRY_FAILED_RENEWAL)

    def _body(self, now: str) -> JSON:
        meta: JSON = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": heartbeat_labels(self.session, self.hostname),
            "annotations": {
                HEARTBEAT_RESTIC_PIDS: self._pids(),
                HEARTBEAT_HOST_ANNOTATION: self.hostname,
            },
        }
        if self._snapshots:
            meta["annotations"][HEARTBEAT_SNAPSHOTS] = self._snapshot_annotation()
        if self.session_uid:
            meta["ownerReferences"] = [
                {
                    "apiVersion": "stash.appscode.com/v1beta1",
                    "kind": "BackupSession",
                    "name": self.session,
                    "uid": self.session_uid,
                }
            ]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": LEASE_SECONDS,
                "acquireTime": now,
                "renewTime": now,
            },
        }

    def _pids(self, known: set[int] | None = None) -> str:
        """Our unfinished restic runs, plus those an earlier holder published (a job's
        backup step hands the heartbeat over to its update-status step)."""
        pids = set(known or ())
        if self.ledger is not None:
            pids.update(self.ledger.pids())
        return ",".join(str(p) for p in sorted(pids))

    def _snapshot_annotation(self) -> str:
        return json.dumps(list(self._snapshots.values()), sort_keys=True, separators=(",", ":"))

    async def _beat(self, *, acquire: bool) -> None:
        for _ in range(3):
            now = _micro(dt.datetime.now(dt.UTC))
            try:
                lease = await self.kube.get(LEASES, self.name, self.namespace)
            except NotFound:
                try:
                    await self.kube.create(LEASES, self._body(now), self.namespace)
                    return
                except Conflict:
                    continue
            spec = lease.setdefault("spec", {})
            if spec.get("holderIdentity") != self.identity:
                if not acquire:
                    log.warning(
                        "heartbeat %s was taken over by %s", self.name, spec.get("holderIdentity")
                    )
                spec["acquireTime"] = now
            spec["holderIdentity"] = self.identity
            spec["renewTime"] = now
            annotations = lease["metadata"].setdefault("annotations", {})
            known = {
                int(p)
                for p in (annotations.get(HEARTBEAT_RESTIC_PIDS) or "").split(",")
                if p.isdigit()
            }
            annotations[HEARTBEAT_RESTIC_PIDS] = self._pids(known)
            for entry in heartbeat_snapshots(annotations):  # an earlier holder's
                self._snapshots.setdefault(str(entry["path"]), entry)
            if self._snapshots:
                annotations[HEARTBEAT_SNAPSHOTS] = self._snapshot_annotation()
            spec["leaseDurationSeconds"] = LEASE_SECONDS
            try:
                await self.kube.replace(LEASES, lease, self.namespace)
                return
            except Conflict:
                continue


async def take_turn(elector: LeaderElector, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` once while `elector` holds its Lease; release the Lease afterwards.

    Waits (retrying every `retry_period`) while another pod has its turn. Should the
    Lease be lost mid-way (apiserver unreachable longer than the renew deadline), the
    work is cancelled and started again at the next turn.
    """
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    async def lead() -> None:
        if not outcome.done():
            try:
                outcome.set_result(await work())
            except Exception as exc:
                outcome.set_exception(exc)
        await loop.create_future()  # hold the Lease until take_turn releases it

    runner = asyncio.create_task(elector.run(lead), name=f"turn on {elector.name}")
    try:
        pending: set[asyncio.Future[Any]] = {outcome, runner}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if runner.done() and not outcome.done():
            runner.result()  # re-raise why the elector stopped
            raise RuntimeError(f"leader election on {elector.name} ended without a turn")
        return await outcome
    finally:
        await cancel_and_wait(runner)
