"""Restore one host of a RestoreSession (`stash restore`, `stash restore-pvc`).

What it is for: the init-container `stash-init` (§4.3, §5.6) and the job step share
`run_restore()`: resolve the RestoreSession, compute the host name (as for backup),
exit at once when this host already reported (a pod restarted after its restore), take
turns with the workload's other pods on the Lease `lock-<kind>-<name>-restore` (so a
Deployment's replicas do not restore host-0 twice), restore, and record the host's
stats entry (phase, duration, error) with an Event `HostRestoreSucceeded|Failed`.

What is restored comes from the matching rule (`stash.contract.restorerules`: the rule
naming the host in `targetHosts` wins, else the catch-all rule): each listed snapshot,
or `latest` of each listed path from `sourceHost` (default: this host), into `/` so
files land at their original absolute paths, with the rule's include/exclude patterns.
When rules exist but none names the host and none is a catch-all, the host has nothing
to restore and succeeds without touching its data, as upstream. A rule that selects
neither paths nor snapshots, or a restore without any rule, fails the host with a
message saying so (upstream restores nothing silently; docs/compatibility.md).

Hooks (§6.3): `preRestore` runs before the restore, and a failed one fails the host
without restoring; `postRestore` runs after it (filtered by its `executionPolicy` on the
host's result), and a failed one fails the host (its message is the host's error; the
restore itself is logged as done). Both are listed in the host entry's `hooks`; a
RestoreSession also gets `Pre/PostRestoreHookExecutionSucceeded` conditions.

Exit status: 0 when the host's restore succeeded (now or before), 1 when it failed (now
or before): an init-container that fails keeps the pod in Init, as upstream, with the
reason in the RestoreSession and in the container's log.

Not for: deciding the session's phase (the operator does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from stash.agent.context import AgentContext
from stash.agent.hooks import restore_hook, with_restore_hook_conditions
from stash.agent.identity import backup_hostname, workload_lease_name
from stash.agent.leases import take_turn
from stash.agent.repository import (
    AgentError,
    describe,
    open_repository,
    version_probed_meanwhile,
)
from stash.agent.restoretarget import RestoreInvoker
from stash.api import RestoreSession
from stash.api.common import HookExecution, Rule
from stash.api.restoresession import HostRestoreStats
from stash.contract.restorerules import RuleMatch, match_rule, rule_for_host
from stash.contract.sessions import format_duration
from stash.kube.client import JSON, NotFound
from stash.kube.events import NORMAL
from stash.kube.leader import LeaderElector
from stash.kube.status import update_status
from stash.logs import log_key, object_key
from stash.restic import ResticError, SnapshotNotFound

__all__ = ["HostRestore", "RestoreRequest", "request_from_rule", "run_restore", "select_rule"]

log = logging.getLogger(__name__)

WAIT_POLL = 2.0


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore for one host."""

    hostname: str
    source_host: str
    snapshots: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    target_dir: str = "/"

    @property
    def nothing(self) -> bool:
        """No rule is for this host: it restores nothing and succeeds."""
        return not self.snapshots and not self.paths


def select_rule(rules: Sequence[Rule], hostname: str) -> Rule | None:
    """The rule for `hostname`: one naming it in targetHosts, else the catch-all (§1.1)."""
    return rule_for_host(rules, hostname)


def request_from_rule(
    rules: Sequence[Rule], hostname: str, args: Sequence[str] = ()
) -> RestoreRequest | str:
    """The restore `hostname` must do (`nothing` when no rule is for it), or the reason
    it cannot restore anything."""
    how, rule = match_rule(rules, hostname)
    if how is RuleMatch.NO_RULES:
        return "the RestoreSession has no rules (spec.target.rules); nothing selects data"
    if rule is None:
        return RestoreRequest(hostname=hostname, source_host=hostname, args=tuple(args))
    if not rule.snapshots and not rule.paths:
        return (
            f"the rule for host {hostname} selects nothing to restore: it lists neither "
            "paths nor snapshots; add the paths (or snapshot IDs) to restore"
        )
    return RestoreRequest(
        hostname=hostname,
        source_host=rule.source_host or hostname,
        snapshots=tuple(rule.snapshots or ()),
        paths=tuple(rule.paths or ()),
        includes=tuple(rule.include or ()),
        excludes=tuple(rule.exclude or ()),
        args=tuple(args),
    )


async def _restore(ctx: AgentContext, rs: RestoreSession, request: RestoreRequest) -> str | None:
    """Run the restore; None on success, else the error for the host's entry."""
    repo_ref = rs.spec.repository if rs.spec else None
    if repo_ref is None or not repo_ref.name:
        return "the RestoreSession has no spec.repository.name"
    try:
        repo = await open_repository(
            ctx.kube, repo_ref.name, repo_ref.namespace or ctx.namespace, ctx.settings
        )
        for snapshot in request.snapshots:
            await repo.restic.restore(
                request.target_dir,
                snapshot,
                includes=request.includes,
                excludes=request.excludes,
                extra_args=request.args,
            )
            log.info("restored snapshot %s for host %s", snapshot, request.hostname)
        for path in request.paths:
            try:
                await repo.restic.restore(
                    request.target_dir,
                    "latest",
                    host=request.source_host,
                    paths=[path],
                    includes=request.includes,
                    excludes=request.excludes,
                    extra_args=request.args,
                )
            except SnapshotNotFound as exc:
                return (
                    f"no snapshot of path {path} from host {request.source_host} in "
                    f"{repo.display}: {exc.message} (hint: list them with `kubectl stash "
                    "snapshots`; check the rule's paths and sourceHost)"
                )
            log.info("restored %s of host %s", path, request.source_host)
    except (AgentError, ResticError) as exc:
        return describe(exc)
    return None


def _invoker(ctx: AgentContext, name: str) -> RestoreInvoker:
    return RestoreInvoker(
        ctx.invoker_kind if ctx.invoker_kind == "RestoreBatch" else "RestoreSession",
        name,
        ctx.target,
    )


async def _wait_until_ready(ctx: AgentContext, name: str) -> JSON | str:
    """The invoker once the operator initiated this host's part (totalHosts), or why not."""
    inv = _invoker(ctx, name)
    said = False
    poll = 0.1  # the operator usually accepts within a moment; then every WAIT_POLL
    while True:
        try:
            live = await ctx.kube.get(inv.resource, name, ctx.namespace)
        except NotFound:
            return f"{inv.kind} {ctx.namespace}/{name} does not exist"
        ready = inv.ready(live)
        if isinstance(ready, str):
            return ready
        if ready:
            return live
        if not said:
            log.info("waiting for the operator to accept %s %s (totalHosts)", inv.kind, name)
            said = True
        await asyncio.sleep(poll)
        poll = min(poll * 2, WAIT_POLL)


def _rule_request(rs: RestoreSession, hostname: str) -> RestoreRequest | str:
    target = rs.spec.target if rs.spec else None
    rules = (target.rules if target else None) or (rs.spec.rules if rs.spec else None)
    return request_from_rule(rules or [], hostname, (target.args if target else None) or ())


HostRestore = Callable[[AgentContext, RestoreSession, RestoreRequest], Awaitable[str | None]]
"""What restores one host (default: files with `restic restore`); None or the error."""


async def _restore_with_hooks(
    ctx: AgentContext,
    rs: RestoreSession,
    live: JSON,
    hostname: str,
    chosen: RestoreRequest | str,
    runs: list[HookExecution],
    perform: HostRestore,
) -> str | None:
    """preRestore, the restore `chosen` by `perform` (or the reason there is none),
    postRestore (module docstring); the host's error or None. Each hook run is appended
    to `runs`."""
    hooks = rs.spec.hooks if rs.spec else None
    if hooks is not None and hooks.pre_restore is not None:
        pre = await restore_hook(
            ctx, "preRestore", hooks.pre_restore, live, hostname, phase="Running"
        )
        runs.append(pre.execution())
        if not pre.ok:
            return pre.message
    error = chosen if isinstance(chosen, str) else await perform(ctx, rs, chosen)
    if hooks is not None and hooks.post_restore is not None:
        phase = "Failed" if error else "Succeeded"
        post = await restore_hook(
            ctx, "postRestore", hooks.post_restore, live, hostname, phase=phase, error=error or ""
        )
        runs.append(post.execution())
        if not post.ok and error is None:
            error = post.message
    return error


async def _restore_turn(
    ctx: AgentContext,
    name: str,
    hostname: str,
    request: RestoreRequest | None,
    perform: HostRestore | None = None,
) -> int:
    inv = _invoker(ctx, name)
    live = await ctx.kube.get(inv.resource, name, ctx.namespace)
    before = inv.entry(live, hostname)
    if before is not None:
        if before.phase == "Succeeded":
            log.info("host %s was already restored for %s; nothing to do", hostname, name)
            return 0
        log.error(
            "the restore of host %s for %s already ended %s: %s (delete the %s "
            "to start the pod without restoring, or fix it and create a new one)",
            hostname,
            name,
            before.phase,
            before.error,
            inv.kind,
        )
        return 1
    if inv.final(live):
        log.error("%s %s is already final; host %s was not restored", inv.kind, name, hostname)
        return 1
    started = time.monotonic()
    view = inv.view(live)
    rs: RestoreSession | None = None if isinstance(view, str) else view
    error: str | None = view if isinstance(view, str) else None
    runs: list[HookExecution] = []
    nothing = False
    if rs is not None:
        chosen = request if request is not None else _rule_request(rs, hostname)
        # Only a host the session's rules leave out has nothing to do; a request the
        # step gives (a database's: the whole dump) is always performed.
        nothing = request is None and not isinstance(chosen, str) and chosen.nothing
        if nothing:
            # no hooks either: a host no rule is for is left exactly as it is
            log.info("no rule of %s is for host %s: nothing to restore", name, hostname)
            error = None
        else:
            restore = perform or _restore
            error = await _restore_with_hooks(ctx, rs, live, hostname, chosen, runs, restore)
    seconds = time.monotonic() - started
    entry = HostRestoreStats(
        hostname=hostname,
        phase="Failed" if error else "Succeeded",
        duration=format_duration(seconds),
        error=error,
        hooks=runs or None,
    )

    def record(obj: JSON) -> JSON | None:
        status = inv.with_entry(obj, entry)
        if status is None or inv.batch or not runs:
            return status
        return with_restore_hook_conditions(status, runs)

    written = await update_status(ctx.kube, inv.resource, name, ctx.namespace, record)
    obj = written or live
    if error:
        await ctx.recorder.warn(
            obj, "HostRestoreFailed", f"restore of host {hostname} failed: {error}"
        )
    else:
        await ctx.recorder.emit(
            obj,
            NORMAL,
            "HostRestoreSucceeded",
            f"restore of host {hostname} succeeded in {entry.duration}"
            + (": no rule is for this host, nothing was restored" if nothing else ""),
        )
    if ctx.push_url:
        await _push_metrics(ctx, rs, hostname, not error, seconds)
    return 1 if error else 0


async def _push_metrics(
    ctx: AgentContext, rs: RestoreSession | None, hostname: str, ok: bool, seconds: float
) -> None:
    """Push the host's restore metrics (its outcome logged, never failing the host)."""
    from stash.sessionmetrics import host_restore_registry, push

    assert ctx.push_url
    repo = (rs.spec.repository.name if rs and rs.spec and rs.spec.repository else "") or ""
    labels = ctx.metric_labels(repo)
    registry = host_restore_registry(labels, hostname, ok, seconds)
    result = await push(ctx.push_url, labels.grouping(hostname), registry)
    level = logging.INFO if result.ok else logging.WARNING
    log.log(level, "restore metrics: %s", result.message)


async def run_restore(
    ctx: AgentContext,
    name: str,
    *,
    hostname: str | None = None,
    request: RestoreRequest | None = None,
    exclusive: bool = True,
    perform: HostRestore | None = None,
) -> int:
    """Restore this host for RestoreSession `name`; the exit status (module docstring).

    `hostname` overrides the computed host name and `request` the rule matching (the
    job model passes both from its flags). `exclusive` takes turns with the workload's
    other pods on its restore Lease (one job per host does not need to). `perform`
    replaces the restore of files (the database steps load a dump instead).
    """
    async with version_probed_meanwhile(ctx.settings):
        return await _run_restore(ctx, name, hostname, request, exclusive, perform)


async def _run_restore(
    ctx: AgentContext,
    name: str,
    hostname: str | None,
    request: RestoreRequest | None,
    exclusive: bool,
    perform: HostRestore | None,
) -> int:
    ready = await _wait_until_ready(ctx, name)
    if isinstance(ready, str):
        log.error("%s", ready)
        return 1
    if hostname is None:
        rs = _invoker(ctx, name).view(ready)
        if isinstance(rs, str):
            log.error("%s", rs)
            return 1
        alias = rs.spec.target.alias if rs.spec and rs.spec.target else None
        try:
            hostname = backup_hostname(ctx.target.kind, alias, ctx.pod.pod_name, ctx.pod.node_name)
        except ValueError as exc:
            log.error("%s", exc)
            return 1
    host = hostname
    with log_key(object_key(_invoker(ctx, name).kind, ctx.namespace, name, host)):
        if not exclusive:
            return await _restore_turn(ctx, name, host, request, perform)
        return await _restore_in_turn(ctx, name, host, request)


async def _restore_in_turn(
    ctx: AgentContext, name: str, host: str, request: RestoreRequest | None
) -> int:
    """Restore `host` once it is this pod's turn on the workload's restore Lease."""
    elector = LeaderElector(
        ctx.kube,
        ctx.namespace,
        workload_lease_name(ctx.target.kind, ctx.target.name, "restore"),
        ctx.pod.pod_name,
        lease_duration=15.0,
        renew_deadline=10.0,
        retry_period=2.0,
    )
    return await take_turn(elector, lambda: _restore_turn(ctx, name, host, request))
