"""A host's hooks in a backup or restore: run them, record them (stash-api.md §6.2, §6.3).

What it is for: the agent (sidecar, restore init-container, the Job model's steps) runs
the target's hooks for its host:

* `pre_backup_hook()` before anything touches the repository; its result goes into the
  target's condition `PreBackupHookExecutionSucceeded` (a False is never turned True by
  another host) and an Event on the session. A failed one fails the host: no snapshot.
* `post_backup_hook()` after the backup (and the post-backup actions), before the host's
  stats entry is written, so the operator sees the hook and the host's result together;
  `executionPolicy` is judged on the target's summary phase (this host's result with the
  hosts already reported); a filtered-out hook is recorded as skipped (condition True).
  The caller writes the conditions with the stats entry (`with_hook_conditions`); a
  preBackup that succeeded is written at once, one that failed with the entry (so the
  operator never ends the session before the host's result is in).
* `restore_hook()` for preRestore / postRestore, recorded by the caller in the host entry
  and, for a RestoreSession, as conditions (`with_restore_hook_conditions`).

Every run is an entry in the host's `hooks` (output bounded) and an Event
(`<Hook>HookExecutionSucceeded|Failed`) on the session.

Not for: running a handler (`stash.hooks`) or deciding policies (`stash.contract.hooks`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from typing import Any

from stash.agent.context import AgentContext
from stash.api.backupsession import BackupSessionStatus, HostBackupStats
from stash.api.common import Handler, HookExecution, PostBackupHook, PostRestoreHook
from stash.api.restoresession import RestoreSessionStatus
from stash.contract import phases as P
from stash.contract.hooks import (
    HOOK_CONDITIONS,
    HookName,
    HookResult,
    bounded_output,
    post_hook_decision,
    summary_data,
)
from stash.hooks import ExecTarget, run_hook
from stash.kube.client import JSON
from stash.kube.conditions import get_condition, set_condition
from stash.kube.events import NORMAL

__all__ = [
    "backup_summary",
    "post_backup_hook",
    "pre_backup_hook",
    "restore_hook",
    "with_hook_conditions",
    "with_restore_hook_conditions",
]

log = logging.getLogger(__name__)


def _elapsed(obj: JSON) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return ""
    start = dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    seconds = max((dt.datetime.now(dt.UTC) - start).total_seconds(), 0.0)
    return f"{seconds:.0f}s"


def backup_summary(
    ctx: AgentContext, session: JSON, phase: str, error: str, hosts: list[Any]
) -> dict[str, Any]:
    """The template data (§6.4) for this agent's target in `session`."""
    spec = session.get("spec") or {}
    invoker = spec.get("invoker") or {}
    target = ctx.target
    version = "v1" if target.kind == "PersistentVolumeClaim" else "apps/v1"
    return summary_data(
        name=session["metadata"]["name"],
        namespace=session["metadata"]["namespace"],
        invoker=(
            invoker.get("apiGroup") or "",
            invoker.get("kind") or "",
            invoker.get("name") or "",
        ),
        target=(version, target.kind, target.name, target.namespace),
        phase=phase,
        duration=_elapsed(session),
        error=error,
        hosts=hosts,
        retry_left=int(spec.get("retryLeft") or 0),
    )


def _exec_target(ctx: AgentContext) -> ExecTarget:
    return ExecTarget(ctx.namespace, ctx.pod.pod_name)


async def _run(
    ctx: AgentContext, name: HookName, handler: Handler, data: dict[str, Any]
) -> HookResult:
    return await run_hook(
        name,
        handler,
        data,
        default_host=os.environ.get("POD_IP") or "127.0.0.1",
        exec_target=_exec_target(ctx),
        pod_exec=ctx.pod_exec,
    )


async def _event(ctx: AgentContext, obj: JSON, result: HookResult, hostname: str) -> None:
    base = HOOK_CONDITIONS[result.name].removesuffix("Succeeded")
    output = bounded_output(result.output)
    message = f"host {hostname}: {result.message}" + (f"; output: {output}" if output else "")
    if result.ok:
        await ctx.recorder.emit(obj, NORMAL, f"{base}Succeeded", message)
    else:
        await ctx.recorder.warn(obj, f"{base}Failed", message)


def with_hook_conditions(
    live: JSON, index: int, executions: Sequence[HookExecution]
) -> JSON | None:
    """The live session with target `index`'s conditions for the hooks run set; a False
    already there stays (another host's hook failed). None when final."""
    raw = live.get("status") or {}
    if raw.get("phase") in P.FINAL_SESSION_PHASES:
        return None
    status = BackupSessionStatus.model_validate(raw)
    targets = status.targets or []
    if index >= len(targets):
        return None
    target = targets[index]
    for run in executions:
        type_ = HOOK_CONDITIONS[run.name]
        previous = get_condition(target.conditions, type_)
        ok = run.phase != "Failed"
        if previous is not None and previous.status == "False" and ok:
            continue
        reason = {"Failed": "HookExecutionFailed", "Skipped": "HookExecutionSkipped"}.get(
            run.phase, "HookExecutionSucceeded"
        )
        message = (run.message or "")[:1024]
        target.conditions = set_condition(target.conditions, type_, ok, reason, message)
    target.phase = P.target_phase(target)
    return status.to_wire()


def with_restore_hook_conditions(status: JSON, executions: Sequence[HookExecution]) -> JSON:
    """A RestoreSession status (wire) with a condition per hook run; a False already
    there (another host's hook failed) stays."""
    st = RestoreSessionStatus.model_validate(status)
    for run in executions:
        type_ = HOOK_CONDITIONS[run.name]
        previous = get_condition(st.conditions, type_)
        ok = run.phase != "Failed"
        if previous is not None and previous.status == "False" and ok:
            continue
        reason = {"Failed": "HookExecutionFailed", "Skipped": "HookExecutionSkipped"}.get(
            run.phase, "HookExecutionSucceeded"
        )
        st.conditions = set_condition(st.conditions, type_, ok, reason, (run.message or "")[:1024])
    return st.to_wire()


async def pre_backup_hook(
    ctx: AgentContext, handler: Handler, session: JSON, hostname: str
) -> HookResult:
    """Run the preBackup hook for `hostname` and emit its Event (module docstring)."""
    data = backup_summary(ctx, session, "Running", "", [])
    result = await _run(ctx, "preBackup", handler, data)
    log.log(logging.INFO if result.ok else logging.WARNING, "%s", result.message)
    await _event(ctx, session, result, hostname)
    return result


def _summary_phase(live: JSON, index: int, host: HostBackupStats) -> str:
    status = BackupSessionStatus.model_validate(live.get("status") or {})
    targets = status.targets or []
    if host.phase == "Failed":
        return "Failed"
    if index < len(targets):
        target = targets[index]
        others = [h for h in target.stats or [] if h.hostname != host.hostname]
        if any(h.phase == "Failed" for h in others) or P.target_phase(target) == "Failed":
            return "Failed"
    return "Succeeded"


async def post_backup_hook(
    ctx: AgentContext, hook: PostBackupHook, live: JSON, index: int, host: HostBackupStats
) -> HookResult:
    """Run (or skip, per `executionPolicy`) the postBackup hook after `host`'s backup."""
    phase = _summary_phase(live, index, host)
    retry_left = int((live.get("spec") or {}).get("retryLeft") or 0)
    skip = post_hook_decision("postBackup", hook.execution_policy, phase, retry_left)
    hostname = host.hostname or ""
    if skip is not None:
        log.info("%s", skip)
        return HookResult("postBackup", True, skip, skipped=True)
    hosts = [h.to_wire() for h in (_target_stats(live, index, host))]
    data = backup_summary(ctx, live, phase, host.error or "", hosts)
    result = await _run(ctx, "postBackup", hook, data)
    log.log(logging.INFO if result.ok else logging.WARNING, "%s", result.message)
    await _event(ctx, live, result, hostname)
    return result


def _target_stats(live: JSON, index: int, host: HostBackupStats) -> list[HostBackupStats]:
    status = BackupSessionStatus.model_validate(live.get("status") or {})
    targets = status.targets or []
    stats = targets[index].stats or [] if index < len(targets) else []
    return [*(h for h in stats if h.hostname != host.hostname), host]


async def restore_hook(
    ctx: AgentContext,
    name: HookName,
    handler: Handler | PostRestoreHook,
    invoker: JSON,
    hostname: str,
    *,
    phase: str,
    error: str = "",
) -> HookResult:
    """Run a preRestore / postRestore hook for `hostname` (postRestore: or skip it per
    its `executionPolicy` on the host's restore `phase`) and emit its Event."""
    if isinstance(handler, PostRestoreHook):
        skip = post_hook_decision(name, handler.execution_policy, phase, 0)
        if skip is not None:
            log.info("%s", skip)
            return HookResult(name, True, skip, skipped=True)
    meta = invoker["metadata"]
    target = ctx.target
    data = summary_data(
        name=meta["name"],
        namespace=meta["namespace"],
        invoker=("stash.appscode.com", invoker.get("kind") or "", meta["name"]),
        target=(
            "v1" if target.kind == "PersistentVolumeClaim" else "apps/v1",
            target.kind,
            target.name,
            target.namespace,
        ),
        phase=phase,
        duration=_elapsed(invoker),
        error=error,
    )
    result = await _run(ctx, name, handler, data)
    log.log(logging.INFO if result.ok else logging.WARNING, "%s", result.message)
    await _event(ctx, invoker, result, hostname)
    return result
