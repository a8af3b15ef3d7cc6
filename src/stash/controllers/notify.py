"""What the operator notifies about a session's end (docs/hooks.md, Notifications).

What it is for: `backup_session_ended()` / `restore_session_ended()`, called once a
session's final phase is written: `SessionFailed` or `SessionSucceeded` with what failed,
and `RepositoryIntegrityFailed` when the session's integrity check said the repository
is damaged. They hand the notification to `ControllerContext.notifier` and return at
once: delivery (and its failures) never touches the session.

Not for: delivering (`stash.notifications`) or stale invokers (`staleness`).
"""

from __future__ import annotations

from stash.api.backupsession import BackupSessionStatus
from stash.api.restoresession import RestoreSessionStatus
from stash.contract import phases as P
from stash.controllers.context import ControllerContext
from stash.kube.client import JSON
from stash.kube.conditions import get_condition
from stash.notifications import Notification
from stash.notifications.config import EventKind

__all__ = ["backup_session_ended", "restore_session_ended"]


def _invoker(obj: JSON) -> str:
    inv = (obj.get("spec") or {}).get("invoker") or {}
    return f"{inv.get('kind') or '?'} {inv.get('name') or '?'}"


def backup_session_ended(ctx: ControllerContext, obj: JSON, summary: str) -> None:
    """Notify about a BackupSession that just became final (`obj`, as written)."""
    if ctx.notifier is None:
        return
    status = BackupSessionStatus.model_validate(obj.get("status") or {})
    meta = obj["metadata"]
    ns, name = meta["namespace"], meta["name"]
    details = {
        "invoker": _invoker(obj),
        "phase": status.phase,
        "duration": status.session_duration,
        "retryLeft": (obj.get("spec") or {}).get("retryLeft"),
        "details": summary,
    }
    if status.phase in ("Failed", "Succeeded"):
        event: EventKind = "SessionFailed" if status.phase == "Failed" else "SessionSucceeded"
        text = f"BackupSession {ns}/{name} of {_invoker(obj)} {status.phase.lower()}"
        ctx.notifier.notify(Notification(event, "BackupSession", ns, name, text, details))
    check = get_condition(status.conditions, P.REPOSITORY_INTEGRITY_VERIFIED)
    if check is not None and check.status == "False":
        text = f"the repository of {_invoker(obj)} in {ns} failed its integrity check"
        ctx.notifier.notify(
            Notification(
                "RepositoryIntegrityFailed",
                "BackupSession",
                ns,
                name,
                text,
                {"invoker": _invoker(obj), "check": check.message},
            )
        )


def restore_session_ended(ctx: ControllerContext, obj: JSON, summary: str) -> None:
    """Notify about a RestoreSession (or RestoreBatch) that just became final."""
    if ctx.notifier is None:
        return
    status = RestoreSessionStatus.model_validate(obj.get("status") or {})
    if status.phase not in ("Failed", "Succeeded"):
        return
    meta = obj["metadata"]
    kind = obj.get("kind") or "RestoreSession"
    ns, name = meta["namespace"], meta["name"]
    event: EventKind = "SessionFailed" if status.phase == "Failed" else "SessionSucceeded"
    text = f"{kind} {ns}/{name} {status.phase.lower()}"
    details = {"phase": status.phase, "duration": status.session_duration, "details": summary}
    ctx.notifier.notify(Notification(event, kind, ns, name, text, details))
