"""A BackupBatch's global hooks, run by the operator (stash-api.md §6.2, §5.4 step 2).

What it is for: `global_pre_backup()` — before the session's first target is initiated,
run the batch's `spec.hooks.preBackup` once and record `GlobalPreBackupHookSucceeded`
(False ends the session Failed with no target run); `global_post_backup()` — once every
target is final, run `spec.hooks.postBackup` (filtered by its `executionPolicy` on the
session's summary phase) and record `GlobalPostBackupHookSucceeded` before the session
is completed. A recorded condition means the hook ran: it is never run twice for a
session (§6.3). Each run is also an Event on the session with its bounded output.

Empty `host` is the operator's own pod (loopback). Exec global hooks need a `PodExec`
(`ControllerContext.pod_exec`) and the operator's pod name (`POD_NAME`).

Not for: per-host hooks (the agent), or running a handler (`stash.hooks`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from stash.api import BackupSession
from stash.api.backupsession import BackupSessionStatus
from stash.api.common import BackupHooks, Handler
from stash.contract import phases as P
from stash.contract.hooks import (
    GLOBAL_HOOK_CONDITIONS,
    HookName,
    HookResult,
    bounded_output,
    post_hook_decision,
    summary_data,
)
from stash.contract.resources import BACKUPSESSIONS
from stash.controllers.context import ControllerContext
from stash.hooks import ExecTarget, run_hook
from stash.kube.client import JSON
from stash.kube.conditions import get_condition, is_false, is_true, set_condition
from stash.kube.events import NORMAL
from stash.kube.status import update_status

__all__ = ["global_post_backup", "global_pre_backup"]

log = logging.getLogger(__name__)


def _data(session: BackupSession, status: BackupSessionStatus, phase: str) -> dict[str, Any]:
    ref = session.spec.invoker if session.spec else None
    errors = [
        f"host {h.hostname}: {h.error}"
        for t in status.targets or []
        for h in t.stats or []
        if h.phase == "Failed" and h.error
    ]
    return summary_data(
        name=str(session.metadata.name),
        namespace=str(session.metadata.namespace),
        invoker=(
            (ref.api_group or "stash.appscode.com") if ref else "",
            (ref.kind or "") if ref else "",
            (ref.name or "") if ref else "",
        ),
        target=("", "", "", ""),
        phase=phase,
        duration=status.session_duration or "",
        error="; ".join(errors),
        hosts=[h.to_wire() for t in status.targets or [] for h in t.stats or []],
        retry_left=int((session.spec.retry_left if session.spec else None) or 0),
    )


async def _run(
    ctx: ControllerContext, name: HookName, handler: Handler, data: dict[str, Any]
) -> HookResult:
    pod = os.environ.get("POD_NAME")
    ns = os.environ.get("POD_NAMESPACE") or ctx.settings.namespace
    return await run_hook(
        name,
        handler,
        data,
        default_host=os.environ.get("POD_IP") or "127.0.0.1",
        exec_target=ExecTarget(ns, pod) if pod else None,
        pod_exec=ctx.pod_exec,
    )


async def _record(ctx: ControllerContext, session: BackupSession, result: HookResult) -> None:
    type_ = GLOBAL_HOOK_CONDITIONS[result.name]
    reason = "HookExecutionSucceeded" if result.ok else "HookExecutionFailed"
    if result.skipped:
        reason = "HookExecutionSkipped"

    def write(live: JSON) -> JSON | None:
        st = BackupSessionStatus.model_validate(live.get("status") or {})
        if st.phase in P.FINAL_SESSION_PHASES or get_condition(st.conditions, type_) is not None:
            return None
        st.conditions = set_condition(st.conditions, type_, result.ok, reason, result.message)
        st.phase = P.backup_session_phase(st)
        return st.to_wire()

    name, ns = str(session.metadata.name), str(session.metadata.namespace)
    written = await update_status(ctx.kube, BACKUPSESSIONS, name, ns, write)
    if written is None or result.skipped:
        return
    output = bounded_output(result.output)
    message = result.message + (f"; output: {output}" if output else "")
    base = type_.removesuffix("Succeeded")
    if result.ok:
        await ctx.recorder.emit(written, NORMAL, f"{base}Succeeded", message)
    else:
        await ctx.recorder.warn(written, f"{base}Failed", message)


async def global_pre_backup(
    ctx: ControllerContext, session: BackupSession, hooks: BackupHooks | None
) -> bool:
    """Run the batch's preBackup hook unless it ran; True when targets may start."""
    status = session.status or BackupSessionStatus()
    if hooks is None or hooks.pre_backup is None:
        return True
    done = get_condition(status.conditions, P.GLOBAL_PRE_BACKUP_HOOK)
    if done is not None:
        return done.status == "True"
    result = await _run(ctx, "preBackup", hooks.pre_backup, _data(session, status, "Running"))
    await _record(ctx, session, result)
    return result.ok


async def global_post_backup(
    ctx: ControllerContext, session: BackupSession, hooks: BackupHooks | None
) -> bool:
    """Run (or skip per policy) the batch's postBackup hook once all targets are final,
    never after a failed global preBackup hook; True when a result was recorded (the
    caller looks at the session again before completing it)."""
    status = session.status or BackupSessionStatus()
    post = hooks.post_backup if hooks is not None else None
    conds = status.conditions
    if post is None or get_condition(conds, P.GLOBAL_POST_BACKUP_HOOK) is not None:
        return False
    if is_false(conds, P.GLOBAL_PRE_BACKUP_HOOK) or is_true(conds, P.BACKUP_SKIPPED):
        return False
    phases = [P.target_phase(t) for t in status.targets or []]
    failed = "Failed" in phases or is_true(conds, P.DEADLINE_EXCEEDED)
    phase = "Failed" if failed else "Succeeded"
    retry_left = int((session.spec.retry_left if session.spec else None) or 0)
    skip = post_hook_decision("postBackup", post.execution_policy, phase, retry_left)
    if skip is not None:
        result = HookResult("postBackup", True, skip, skipped=True)
    else:
        result = await _run(ctx, "postBackup", post, _data(session, status, phase))
    await _record(ctx, session, result)
    return True
