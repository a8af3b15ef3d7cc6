"""What the operator tells its notifiers when a session ends (`controllers.notify`):
failed and succeeded sessions with what failed, and a failed integrity check."""

from __future__ import annotations

from typing import Any, cast

from stash.controllers.context import ControllerContext
from stash.controllers.notify import backup_session_ended, restore_session_ended
from stash.notifications import Notification


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def notify(self, notification: Notification) -> None:
        self.sent.append(notification)


class Ctx:
    def __init__(self) -> None:
        self.notifier = Recorder()


def session(phase: str, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "kind": "BackupSession",
        "metadata": {"name": "web-1", "namespace": "demo"},
        "spec": {"invoker": {"kind": "BackupConfiguration", "name": "web"}, "retryLeft": 1},
        "status": {"phase": phase, "sessionDuration": "12s", "conditions": conditions or []},
    }


def test_a_failed_backup_session_with_a_damaged_repository() -> None:
    ctx = Ctx()
    check = {
        "type": "RepositoryIntegrityVerified",
        "status": "False",
        "reason": "FailedToVerifyRepositoryIntegrity",
        "message": "pack abc is damaged",
        "lastTransitionTime": "2024-05-01T00:00:00Z",
    }
    backup_session_ended(cast(ControllerContext, ctx), session("Failed", [check]), "Failed in 12s")
    failed, damaged = ctx.notifier.sent
    assert failed.event == "SessionFailed"
    assert failed.summary == "BackupSession demo/web-1 of BackupConfiguration web failed"
    assert failed.details["details"] == "Failed in 12s" and failed.details["retryLeft"] == 1
    assert damaged.event == "RepositoryIntegrityFailed"
    assert damaged.details["check"] == "pack abc is damaged"


def test_succeeded_and_skipped_sessions() -> None:
    ctx = Ctx()
    backup_session_ended(cast(ControllerContext, ctx), session("Succeeded"), "Succeeded in 12s")
    backup_session_ended(cast(ControllerContext, ctx), session("Skipped"), "skipped")
    assert [n.event for n in ctx.notifier.sent] == ["SessionSucceeded"]


def test_restore_sessions() -> None:
    ctx = Ctx()
    restore = {
        "kind": "RestoreSession",
        "metadata": {"name": "restore", "namespace": "demo"},
        "status": {"phase": "Failed", "sessionDuration": "3s"},
    }
    restore_session_ended(cast(ControllerContext, ctx), restore, "Failed: host host-0: boom")
    (sent,) = ctx.notifier.sent
    assert (sent.event, sent.kind, sent.summary) == (
        "SessionFailed",
        "RestoreSession",
        "RestoreSession demo/restore failed",
    )


def test_no_notifier_no_work() -> None:
    ctx = Ctx()
    ctx.notifier = None  # type: ignore[assignment]
    backup_session_ended(cast(ControllerContext, ctx), session("Failed"), "x")
