"""The backup sidecar (`stash run-backup`): watch an invoker's sessions, back up this host.

What it is for: `run_sidecar()`, the long-running loop of the injected `stash`
container (stash-api.md §4.5). It resolves its invoker and host name, then:

* Deployment (and other one-host kinds): competes for the Lease
  `lock-<kind>-<name>-backup`; only the leader watches sessions;
* StatefulSet / DaemonSet: every pod watches, and for each session the pods take
  turns on that same Lease, so one restic at a time runs against the repository and
  the host whose turn completes the target runs the post-backup actions.

It watches the BackupSessions labelled with its invoker and acts on a session only
when the session is not final, the operator initiated its target (`totalHosts`), and
its host has no stats entry yet (`stats.backup_assignment`); then `executor`
does the rest. A backup failure is recorded and the sidecar keeps watching; it never
exits because of one. A backup whose report could not be written (apiserver down) is
kept in memory and reported by the next attempt, not taken again.

Not for: the backup itself (`executor`), restores (`restore`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from stash.agent.context import AgentContext, BackupInvoker, load_backup_invoker
from stash.agent.executor import BackupOutcome, back_up_host
from stash.agent.identity import SERIALIZED_KINDS, backup_hostname, workload_lease_name
from stash.agent.leases import take_turn
from stash.agent.repository import AgentError
from stash.agent.stats import Assignment, backup_assignment
from stash.contract.resources import BACKUPSESSIONS
from stash.contract.sessions import invoker_selector
from stash.kube.client import JSON, KubeError, NotFound
from stash.kube.informer import Informer
from stash.kube.leader import LeaderElector
from stash.kube.tasks import cancel_and_wait
from stash.logs import log_key, object_key

__all__ = ["run_sidecar"]

log = logging.getLogger(__name__)

INVOKER_RETRY = 10.0
BUSY_RETRY = 10.0


def _elector(ctx: AgentContext, lease: str) -> LeaderElector:
    """The workload Lease with upstream's timings (15s lease, 10s renew, 2s retry)."""
    return LeaderElector(
        ctx.kube,
        ctx.namespace,
        lease,
        ctx.pod.pod_name,
        lease_duration=15.0,
        renew_deadline=10.0,
        retry_period=2.0,
    )


async def _resolve(ctx: AgentContext) -> tuple[BackupInvoker, str]:
    """The invoker and this pod's host name; waits while the invoker is missing."""
    while True:
        try:
            invoker = await load_backup_invoker(
                ctx.kube, ctx.invoker_kind, ctx.invoker_name, ctx.namespace, ctx.target
            )
            alias = invoker.target.alias
            host = backup_hostname(ctx.target.kind, alias, ctx.pod.pod_name, ctx.pod.node_name)
            return invoker, host
        except (AgentError, KubeError) as exc:
            log.warning("cannot start backing up yet: %s; retrying in %.0fs", exc, INVOKER_RETRY)
        await asyncio.sleep(INVOKER_RETRY)


class _SessionWatcher:
    """Feeds the invoker's sessions, one at a time, to the backup of this host."""

    def __init__(self, ctx: AgentContext, hostname: str) -> None:
        self.ctx = ctx
        self.hostname = hostname
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.pending: set[str] = set()
        self.serialized = ctx.target.kind in SERIALIZED_KINDS
        self.lease = workload_lease_name(ctx.target.kind, ctx.target.name, "backup")
        self.unreported: dict[str, BackupOutcome] = {}
        """Backups whose report failed, by session: the next attempt reports them."""

    def _enqueue(self, name: str) -> None:
        if name not in self.pending:
            self.pending.add(name)
            self.queue.put_nowait(name)

    def _on_event(self, kind: str, obj: JSON, _old: JSON | None) -> None:
        if kind != "DELETED":
            self._enqueue(obj["metadata"]["name"])

    async def watch(self) -> None:
        """Watch sessions and work through them until cancelled."""
        ctx = self.ctx
        selector = invoker_selector(ctx.invoker_kind, ctx.invoker_name)
        informer = Informer(
            self.ctx.kube,
            BACKUPSESSIONS,
            namespace=self.ctx.namespace,
            label_selector=selector,
            resync_period=60.0,
        )
        informer.add_handler(self._on_event)
        watching = asyncio.create_task(informer.run(), name="watch backupsessions")
        log.info("host %s watching BackupSessions (%s)", self.hostname, selector)
        try:
            while True:
                name = await self.queue.get()
                self.pending.discard(name)
                key = object_key("BackupSession", ctx.namespace, name, self.hostname)
                try:
                    with log_key(key):
                        await self._handle(name)
                except (KubeError, OSError) as exc:
                    log.warning("%s: %s; trying again shortly", name, exc)
                    self._later(name)
                except Exception:  # never let one session stop the sidecar
                    log.exception("%s: unexpected failure; trying again shortly", name)
                    self._later(name)
        finally:
            await cancel_and_wait(watching)

    def _later(self, name: str) -> None:
        asyncio.get_running_loop().call_later(BUSY_RETRY, self._enqueue, name)

    async def _live_assignment(self, name: str) -> tuple[JSON, Assignment | str] | None:
        try:
            session = await self.ctx.kube.get(BACKUPSESSIONS, name, self.ctx.namespace)
        except NotFound:
            self._forget_unreported(name, "the session is gone")
            return None
        assignment = backup_assignment(session, self.ctx.target, self.hostname)
        if isinstance(assignment, str):
            self._forget_unreported(name, assignment)
        return session, assignment

    def _forget_unreported(self, name: str, why: str) -> None:
        outcome = self.unreported.pop(name, None)
        if outcome is not None and outcome.host.snapshots:
            ids = ", ".join(str(s.name) for s in outcome.host.snapshots)
            log.info(
                "%s: dropping the kept result of host %s (snapshots %s): %s",
                name,
                self.hostname,
                ids,
                why,
            )

    async def _handle(self, name: str) -> None:
        found = await self._live_assignment(name)
        if found is None or isinstance(found[1], str):
            if found is not None:
                log.debug("%s: nothing to do: %s", name, found[1])
            return
        if self.serialized:
            elector = _elector(self.ctx, self.lease)
            await take_turn(elector, lambda: self._back_up(name))
        else:
            await self._back_up(name)

    async def _back_up(self, name: str) -> None:
        found = await self._live_assignment(name)  # again: the turn may have taken a while
        if found is None:
            return
        session, assignment = found
        if isinstance(assignment, str):
            return
        try:
            invoker = await load_backup_invoker(
                self.ctx.kube,
                self.ctx.invoker_kind,
                self.ctx.invoker_name,
                self.ctx.namespace,
                self.ctx.target,
            )
        except AgentError as exc:
            log.warning("%s: %s; trying again shortly", name, exc)
            self._later(name)
            return
        done = await back_up_host(
            self.ctx, invoker, session, assignment, self.hostname, unreported=self.unreported
        )
        if not done:
            self._later(name)


async def run_sidecar(ctx: AgentContext) -> None:
    """Run the backup sidecar until cancelled (module docstring)."""
    _, hostname = await _resolve(ctx)
    watcher = _SessionWatcher(ctx, hostname)
    log.info(
        "stash sidecar for %s %s/%s: target %s %s, host %s",
        ctx.invoker_kind,
        ctx.namespace,
        ctx.invoker_name,
        ctx.target.kind,
        ctx.target.name,
        hostname,
    )
    if watcher.serialized:
        await watcher.watch()
        return
    elector = _elector(ctx, watcher.lease)
    lead: Callable[[], Awaitable[None]] = watcher.watch
    await elector.run(lead)
