"""StashSidecarInjected: a BackupConfiguration that cannot back up is never Ready (#13)."""

from __future__ import annotations

from typing import Any

from stash.api import BackupConfiguration
from stash.api.common import Condition
from stash.contract import phases as P
from stash.controllers.backupconfiguration import sidecar_check
from stash.controllers.conditions import TargetFacts


def _bc(mount: str = "data", name: str = "web-backup", **extra: Any) -> BackupConfiguration:
    return BackupConfiguration.model_validate(
        {
            "metadata": {"name": name, "namespace": "demo"},
            "spec": {
                **extra,
                "schedule": "*/5 * * * *",
                "repository": {"name": "repo"},
                "retentionPolicy": {"name": "keep", "keepLast": 3},
                "target": {
                    "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
                    "paths": ["/data"],
                    "volumeMounts": [{"name": mount, "mountPath": "/data"}],
                },
            },
        }
    )


def _sts(sidecar_for: str | None = None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [{"name": "db", "image": "postgres"}]
    if sidecar_for:
        containers.append(
            {"name": "stash", "args": ["run-backup", f"--invoker-name={sidecar_for}"]}
        )
    return {
        "metadata": {"name": "db", "namespace": "demo"},
        "spec": {
            "template": {"spec": {"containers": containers}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}],
        },
    }


def _facts(workload: dict[str, Any]) -> TargetFacts:
    return TargetFacts("StatefulSet", "demo", "db", True, workload=workload)


def test_a_mount_the_workload_lacks_is_a_false_condition_and_not_ready() -> None:
    check = sidecar_check(_bc(mount="typo"), _facts(_sts()))
    assert check is not None and check.status is False
    assert check.reason == "SidecarInjectionFailed" and '"typo"' in check.message
    conds = [
        Condition(
            type=t,
            status="True",
            reason="r",
            message="m",
            last_transition_time="2026-01-01T00:00:00Z",
        )  # type: ignore[arg-type]
        for t in (
            P.REPOSITORY_FOUND,
            P.BACKEND_SECRET_FOUND,
            P.VALIDATION_PASSED,
            P.SCHEDULE_REGISTERED,
        )
    ]
    conds.append(
        Condition(
            type=P.STASH_SIDECAR_INJECTED,
            status="False",
            reason=check.reason,
            message=check.message,
            last_transition_time="2026-01-01T00:00:00Z",
        )  # type: ignore[arg-type]
    )
    assert P.backup_invoker_phase(conds, None) == "NotReady"


def test_claim_template_mounts_are_fine_and_the_running_sidecar_is_recognised() -> None:
    pending = sidecar_check(_bc(), _facts(_sts()))
    assert pending is not None and pending.status == "Unknown"
    done = sidecar_check(_bc(), _facts(_sts(sidecar_for="web-backup")))
    assert done is not None and done.status is True
    other = sidecar_check(_bc(), _facts(_sts(sidecar_for="newer-backup")))
    assert other is not None and other.status is False and "newer-backup" in other.message


def test_job_model_invokers_have_no_sidecar_condition() -> None:
    assert sidecar_check(_bc(task={"name": "pvc-backup"}), _facts(_sts())) is None
