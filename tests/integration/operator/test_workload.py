"""Without the webhook, the operator injects the backup sidecar into a targeted workload
within seconds and removes it when the BackupConfiguration goes (§4.1)."""

from __future__ import annotations

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, EVENTS
from tests.integration.operator.conftest import OperatorFactory, create_world
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


def _stash_containers(dep: JSON) -> list[JSON]:
    return [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "stash"]


async def test_sidecar_is_repaired_and_removed_without_webhook(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await create_world(rawkube, namespace)  # no webhook is registered in this test

    async def injected() -> JSON | None:
        dep = await rawkube.get(DEPLOYMENTS, "web", namespace)
        return dep if _stash_containers(dep) else None

    dep = await eventually(injected, timeout=20, what="the stash sidecar")
    (sidecar,) = _stash_containers(dep)
    assert sidecar["args"][:3] == [
        "run-backup",
        "--invoker-name=bc",
        "--invoker-kind=BackupConfiguration",
    ]
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    assert mounts["data"] == "/data" and mounts["stash-tmp-dir"] == "/stash-tmp"
    assert "stash.appscode.com/last-applied-backup-invoker" in dep["metadata"]["annotations"]
    # Level-triggered: another pass changes nothing (exactly one sidecar, no churn).
    generation = dep["metadata"]["generation"]
    await rawkube.patch(DEPLOYMENTS, "web", {"metadata": {"labels": {"touched": "yes"}}}, namespace)

    async def settled() -> bool:
        d = await rawkube.get(DEPLOYMENTS, "web", namespace)
        return len(_stash_containers(d)) == 1 and d["metadata"]["generation"] == generation

    await eventually(settled, timeout=10, what="no further template changes")

    await rawkube.delete(BACKUPCONFIGURATIONS, "bc", namespace)

    async def removed() -> JSON | None:
        d = await rawkube.get(DEPLOYMENTS, "web", namespace)
        return d if not _stash_containers(d) else None

    clean = await eventually(removed, timeout=20, what="the sidecar removed")
    names = [v["name"] for v in clean["spec"]["template"]["spec"]["volumes"]]
    assert names == ["data"]
    annotations = clean["metadata"].get("annotations") or {}
    assert not any(k.startswith("stash.appscode.com/last-applied") for k in annotations)


async def test_a_missing_repository_is_named_with_its_namespace_in_the_workloads_event(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await create_world(rawkube, namespace, repository={"name": "nowhere"})

    async def warned() -> str | None:
        items = (await rawkube.list(EVENTS, namespace))["items"]
        found = [
            e["message"]
            for e in items
            if e["involvedObject"]["name"] == "web" and e["reason"] == "StashInjectionFailed"
        ]
        return found[0] if found else None

    message = await eventually(warned, timeout=20, what="a StashInjectionFailed Event")
    assert message == f"Repository {namespace}/nowhere was not found"
