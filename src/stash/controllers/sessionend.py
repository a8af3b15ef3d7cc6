"""The end of a BackupSession (stash-api.md §5.4, §5.8): completion and retries.

What it is for: `complete_session()`, once every host reported or the session was
skipped: clean the invoker's history per backupHistoryLimit, publish the session's
metrics (`metricspush`) and record how that went (which makes the phase final), emit
the final Event with what failed, and hand the notifiers what happened (`notify`);
`retry_session()`, for a Failed session with retries left: plan the retry after
retryConfig.delay, then create the next session; `invoker_key()`, the cache index from a
session to its invoker (the operator's wiring and the history cleanup use it).

Not for: driving a running session (`backupsession`).
"""

from __future__ import annotations

import datetime as dt

from stash import metrics
from stash.api import BackupConfiguration, BackupSession
from stash.api.backupsession import BackupSessionStatus
from stash.contract import phases as P
from stash.contract.resources import BACKUPSESSIONS
from stash.contract.sessions import (
    LABEL_INVOKER_NAME,
    LABEL_INVOKER_TYPE,
    format_duration,
    history_to_delete,
    invoker_selector,
)
from stash.controllers.context import ControllerContext
from stash.controllers.metricspush import PROJECTED, MetricsRecord, backup_session_metrics
from stash.controllers.notify import backup_session_ended
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, KubeError
from stash.kube.conditions import get_condition, is_true, set_condition
from stash.kube.controller import DONE, Result
from stash.kube.events import NORMAL, WARNING
from stash.kube.status import update_status
from stash.validation import parse_duration


def invoker_key(obj: JSON) -> list[str]:
    """Index: `<Kind>/<namespace>/<name>` of a session's invoker (from its spec; the
    labels only when the spec names none: a long name's label value is shortened)."""
    labels = obj["metadata"].get("labels") or {}
    inv = (obj.get("spec") or {}).get("invoker") or {}
    kind = inv.get("kind") or labels.get(LABEL_INVOKER_TYPE)
    name = inv.get("name") or labels.get(LABEL_INVOKER_NAME)
    if not kind or not name:
        return []
    return [f"{kind}/{obj['metadata']['namespace']}/{name}"]


async def complete_session(
    ctx: ControllerContext,
    session: BackupSession,
    obj: JSON,
    invoker: BackupConfiguration | None,
    now: dt.datetime,
) -> None:
    """Clean history, publish the metrics and record it (the phase becomes final), emit
    the Event."""
    ns, name = str(session.metadata.namespace), str(session.metadata.name)
    cleaned, clean_msg = await _clean_history(ctx, session, obj, invoker)
    created = session.metadata.creation_timestamp or now

    def finish(live: JSON, pushed: MetricsRecord) -> JSON | None:
        st = BackupSessionStatus.model_validate(live.get("status") or {})
        if st.phase in P.FINAL_SESSION_PHASES:
            return None
        c = set_condition(
            st.conditions,
            P.BACKUP_HISTORY_CLEANED,
            cleaned,
            "SuccessfullyCleanedBackupHistory" if cleaned else "FailedToCleanBackupHistory",
            clean_msg,
        )
        c = set_condition(c, P.METRICS_PUSHED, pushed.status, pushed.reason, pushed.message)
        st.conditions = c
        for t in st.targets or []:
            t.phase = P.target_phase(t)
        st.phase = P.backup_session_phase(st)
        st.session_duration = format_duration((now - created).total_seconds())
        return st.to_wire()

    # The phase does not depend on the push: publish what the session ends as, then write.
    projected = finish(obj, PROJECTED)
    if projected is None:
        return
    status = BackupSessionStatus.model_validate(projected)
    pushed = await backup_session_metrics(ctx, session, status, invoker, now)
    written = await update_status(
        ctx.kube, BACKUPSESSIONS, name, ns, lambda live: finish(live, pushed)
    )
    if written is None:
        return
    done = BackupSessionStatus.model_validate(written.get("status") or {})
    ref = session.spec.invoker if session.spec else None
    if done.phase == "Succeeded":
        kind, inv_name = (ref.kind, ref.name) if ref else ("", "")
        metrics.LAST_SUCCESS.labels(ns, kind, inv_name).set(now.timestamp())
    summary = _summary(done)
    await ctx.recorder.emit(
        written,
        NORMAL if done.phase in ("Succeeded", "Skipped") else WARNING,
        f"BackupSession{done.phase}",
        summary,
    )
    backup_session_ended(ctx, written, summary)


async def _clean_history(
    ctx: ControllerContext, session: BackupSession, obj: JSON, invoker: BackupConfiguration | None
) -> tuple[bool, str]:
    keys = invoker_key(obj)
    if not keys:
        return True, "no invoker labels; nothing to clean"
    limit = 1
    if invoker is not None and invoker.spec is not None:
        value = invoker.spec.backup_history_limit
        limit = 1 if value is None else int(value)
    ns = session.metadata.namespace
    kind, _, inv_name = keys[0].split("/", 2)
    try:
        # Read the invoker's sessions from the apiserver, not the cache: deleting
        # history must not act on a phase the cache has not caught up with yet.
        listing = await ctx.kube.list(
            BACKUPSESSIONS,
            ns,
            label_selector=invoker_selector(kind, inv_name),
        )
    except KubeError as exc:
        return False, f"listing BackupSessions failed: {exc.message or exc}"
    siblings = listing.get("items") or []
    doomed = history_to_delete(siblings, limit, completing=session.metadata.name)
    try:
        for victim in doomed:
            await ctx.kube.delete(BACKUPSESSIONS, victim, ns, propagation="Background")
    except KubeError as exc:
        return False, f"deleting old BackupSessions failed: {exc.message or exc}"
    return True, f"kept the newest {limit}; deleted {len(doomed)} older session(s)"


async def retry_session(
    ctx: ControllerContext,
    session: BackupSession,
    obj: JSON,
    status: BackupSessionStatus,
    invoker: BackupConfiguration | None,
) -> Result:
    """For a Failed session with retries left: plan the retry, then create the next
    session once its time has come (each step written once, whoever runs it)."""
    retry_left = int((session.spec.retry_left if session.spec else None) or 0)
    if status.phase != "Failed" or retry_left <= 0 or status.retried or invoker is None:
        return DONE
    now = ctx.now()
    name, ns = str(session.metadata.name), session.metadata.namespace
    if status.next_retry is None:
        retry = invoker.spec.retry_config if invoker.spec else None
        try:
            delay = parse_duration(retry.delay) if retry and retry.delay else 0.0
        except ValueError:
            delay = 0.0
        when = now + dt.timedelta(seconds=delay)

        def plan(live: JSON) -> JSON | None:
            st = BackupSessionStatus.model_validate(live.get("status") or {})
            if st.next_retry is not None or st.retried:
                return None
            st.next_retry = when
            return st.to_wire()

        await update_status(ctx.kube, BACKUPSESSIONS, name, ns, plan)
        return Result(requeue_after=max(delay, 0.01))
    if now < status.next_retry:
        return Result(requeue_after=(status.next_retry - now).total_seconds() + 0.05)
    new_name = await create_backup_session(ctx.kube, invoker.to_wire(), now, retry_left - 1)

    def mark(live: JSON) -> JSON | None:
        st = BackupSessionStatus.model_validate(live.get("status") or {})
        if st.retried:
            return None
        st.retried = True
        return st.to_wire()

    await update_status(ctx.kube, BACKUPSESSIONS, name, ns, mark)
    await ctx.recorder.emit(
        obj,
        NORMAL,
        "BackupSessionRetried",
        f"retrying as BackupSession {new_name} ({retry_left - 1} retries left after it)",
    )
    return DONE


def _summary(status: BackupSessionStatus) -> str:
    """What a person reads in the final Event: the phase, the duration and what failed."""
    if status.phase == "Skipped":
        cond = get_condition(status.conditions, P.BACKUP_SKIPPED)
        return f"skipped: {cond.message if cond else ''}"
    problems = [f"{c.type}: {c.message}" for c in status.conditions or [] if c.status == "False"]
    if is_true(status.conditions, P.DEADLINE_EXCEEDED):
        cond = get_condition(status.conditions, P.DEADLINE_EXCEEDED)
        problems.append(cond.message or "deadline exceeded" if cond else "deadline exceeded")
    targets = status.targets or []
    for i, t in enumerate(targets):
        # A batch names the member: "member 0 (PersistentVolumeClaim data): host ..."
        who = f"member {i} ({t.ref.kind} {t.ref.name}): " if len(targets) > 1 and t.ref else ""
        for h in t.stats or []:
            if h.phase == "Failed":
                problems.append(f"{who}host {h.hostname}: {h.error}")
        got = len([h for h in t.stats or [] if h.phase])
        if t.total_hosts and got < t.total_hosts:
            problems.append(f"{who}{t.total_hosts - got} of {t.total_hosts} hosts did not report")
    head = f"{status.phase} in {status.session_duration}"
    return head + (": " + "; ".join(problems) if problems else "")
