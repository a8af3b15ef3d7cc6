"""How an agent records a host's hooks in the session (`stash.agent.hooks`): conditions
on the target, a failure never turned into a success by another host, the target's
phase follows, nothing is written once the session is final."""

from __future__ import annotations

from typing import Any

from stash.agent.hooks import with_hook_conditions, with_restore_hook_conditions
from stash.api.common import HookExecution


def session(phase: str | None = "Running", conditions: list[Any] | None = None) -> dict[str, Any]:
    target: dict[str, Any] = {
        "ref": {"kind": "Deployment", "name": "web"},
        "totalHosts": 2,
        "stats": [{"hostname": "host-0", "phase": "Succeeded"}],
    }
    if conditions:
        target["conditions"] = conditions
    status: dict[str, Any] = {"targets": [target]}
    if phase:
        status["phase"] = phase
    return {"metadata": {"name": "s", "namespace": "demo"}, "status": status}


def conditions_of(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["targets"][0]["conditions"]}


FAILED_PRE = HookExecution(name="preBackup", phase="Failed", message="preBackup hook failed: 500")
OK_PRE = HookExecution(name="preBackup", phase="Succeeded", message="ok")
SKIPPED_POST = HookExecution(name="postBackup", phase="Skipped", message="Skipping executing")


def test_a_failed_pre_hook_fails_the_target() -> None:
    status = with_hook_conditions(session(), 0, [FAILED_PRE])
    assert status is not None
    assert conditions_of(status) == {
        "PreBackupHookExecutionSucceeded": ("False", "HookExecutionFailed")
    }
    assert status["targets"][0]["phase"] == "Failed"


def test_another_hosts_success_does_not_hide_a_failure() -> None:
    failed = with_hook_conditions(session(), 0, [FAILED_PRE])
    assert failed is not None
    again = with_hook_conditions({**session(), "status": failed}, 0, [OK_PRE])
    assert again is not None
    assert conditions_of(again)["PreBackupHookExecutionSucceeded"][0] == "False"


def test_a_skipped_post_hook_is_true_with_its_reason() -> None:
    status = with_hook_conditions(session(), 0, [SKIPPED_POST])
    assert status is not None
    assert conditions_of(status) == {
        "PostBackupHookExecutionSucceeded": ("True", "HookExecutionSkipped")
    }
    assert status["targets"][0]["phase"] == "Running"


def test_nothing_is_written_to_a_final_session_or_a_missing_target() -> None:
    assert with_hook_conditions(session("Failed"), 0, [OK_PRE]) is None
    assert with_hook_conditions(session(), 3, [OK_PRE]) is None


def test_restore_hook_conditions() -> None:
    failed = HookExecution(name="preRestore", phase="Failed", message="preRestore hook failed")
    ok = HookExecution(name="preRestore", phase="Succeeded", message="ok")
    status = with_restore_hook_conditions({"totalHosts": 2}, [failed])
    status = with_restore_hook_conditions(status, [ok])  # another host's success
    (cond,) = status["conditions"]
    assert (cond["type"], cond["status"], cond["message"]) == (
        "PreRestoreHookExecutionSucceeded",
        "False",
        "preRestore hook failed",
    )
