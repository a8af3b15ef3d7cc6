"""A BackupConfiguration becomes Ready with the documented conditions, follows its
Secret's existence, and is Invalid (never a crash) when its schedule is bad."""

from __future__ import annotations

from typing import Any

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS
from stash.kube.client import Kube
from stash.kube.resources import SECRETS
from tests.integration.operator.conftest import OperatorFactory, create_world, secret
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


def _conds(obj: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {
        c["type"]: (c["status"], c.get("reason", ""), c.get("message", ""))
        for c in (obj.get("status") or {}).get("conditions") or []
    }


async def _phase(kube: Kube, ns: str, want: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        obj = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
        return obj if (obj.get("status") or {}).get("phase") == want else None

    return await eventually(probe, timeout=30, what=f"BackupConfiguration phase {want}")


async def test_ready_then_not_ready_without_secret_then_ready_again(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await create_world(rawkube, namespace)
    bc = await _phase(rawkube, namespace, "Ready")
    conds = _conds(bc)
    for kind in (
        "RepositoryFound",
        "BackendSecretFound",
        "ValidationPassed",
        "BackupTargetFound",
        "StashSidecarInjected",
        "ScheduleRegistered",
    ):
        assert conds[kind][0] == "True", (kind, conds[kind])
    assert conds["RepositoryFound"][1] == "RepositoryAvailable"
    assert "stash.appscode.com" in bc["metadata"]["finalizers"]
    assert bc["status"]["observedGeneration"] == bc["metadata"]["generation"]

    await rawkube.delete(SECRETS, "repo-secret", namespace)
    bc = await _phase(rawkube, namespace, "NotReady")
    status, reason, message = _conds(bc)["BackendSecretFound"]
    assert (status, reason) == ("False", "BackendSecretNotAvailable")
    assert f"{namespace}/repo-secret" in message

    await rawkube.create(SECRETS, secret(), namespace)
    await _phase(rawkube, namespace, "Ready")


async def test_a_configuration_whose_sidecar_cannot_be_injected_is_never_ready(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    # it used to be Ready while the only trace of the refusal was an Event on the workload
    await run_operator()
    target = {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "paths": ["/data"],
        "volumeMounts": [{"name": "no-such-volume", "mountPath": "/data"}],
    }
    await create_world(rawkube, namespace, target=target)
    bc = await _phase(rawkube, namespace, "NotReady")

    async def condition() -> tuple[str, str, str] | None:
        obj = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
        return _conds(obj).get("StashSidecarInjected")

    status, reason, message = await eventually(condition, timeout=30, what="StashSidecarInjected")
    assert (status, reason) == ("False", "SidecarInjectionFailed")
    assert '"no-such-volume"' in message
    assert bc["status"]["phase"] == "NotReady"


async def test_bad_schedule_past_the_webhook_is_invalid_with_the_problem(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    op = await run_operator()
    await create_world(rawkube, namespace, schedule="*/5 * * 13 *")
    bc = await _phase(rawkube, namespace, "Invalid")
    status, reason, message = _conds(bc)["ValidationPassed"]
    assert (status, reason) == ("False", "ResourceValidationFailed")
    assert "13" in message and "month" in message
    assert op.engine.keys() == [], "an invalid object has no schedule"
    # Fixing it makes it Ready: the operator did not get stuck on the bad object.
    await rawkube.patch(BACKUPCONFIGURATIONS, "bc", {"spec": {"schedule": "0 * * * *"}}, namespace)
    await _phase(rawkube, namespace, "Ready")
    assert op.engine.keys() == [f"BackupConfiguration/{namespace}/bc"]


async def test_metrics_endpoint_reports_reconciles_queues_and_watches(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    import aiohttp

    op = await run_operator()
    await create_world(rawkube, namespace)
    await _phase(rawkube, namespace, "Ready")
    base = f"http://127.0.0.1:{op.metrics_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 200
        async with http.get(f"{base}/metrics") as r:
            text = await r.text()
    for needle in (
        'stash_operator_reconcile_total{controller="backupconfiguration"}',
        'stash_operator_reconcile_duration_seconds_bucket{controller="backupconfiguration"',
        'stash_operator_queue_depth{controller="repository"}',
        'stash_operator_watch_failures_total{resource="backupconfigurations"}',
        "stash_operator_is_leader 1.0",
    ):
        assert needle in text, needle
