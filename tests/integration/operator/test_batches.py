"""BackupBatch and RestoreBatch against the real control plane (no data moved here; the
end-to-end tests run the agents): a Deployment member gets the batch's sidecar, the
batch becomes Ready with memberConditions, a batch with hooks is Invalid with the
reason, and a session of a Sequential batch leaves the second member Pending."""

from __future__ import annotations

import datetime as dt

import pytest

from stash.contract.resources import BACKUPBATCHES, BACKUPSESSIONS, REPOSITORIES
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, SECRETS
from tests.integration.operator.conftest import OperatorFactory, deployment, repository, secret
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}


def batch(order: str = "Sequential", **spec: object) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"name": "wp"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "executionOrder": order,
            "repository": {"name": "repo"},
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            "members": [
                {
                    "task": {"name": "pvc-backup"},
                    "target": {
                        "ref": {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "name": "data",
                        },
                    },
                },
                {
                    "target": {
                        "ref": WEB,
                        "paths": ["/data"],
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                },
            ],
            **spec,
        },
    }


async def _phase(kube: Kube, ns: str, want: str) -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(BACKUPBATCHES, "wp", ns)
        return obj if (obj.get("status") or {}).get("phase") == want else None

    return await eventually(probe, timeout=30, what=f"BackupBatch wp {want}")


async def test_batch_member_gets_the_sidecar_and_the_batch_becomes_ready(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    from stash.kube.resources import PVCS

    await run_operator()
    await rawkube.create(SECRETS, secret(), namespace)
    await rawkube.create(REPOSITORIES, repository(), namespace)
    await rawkube.create(DEPLOYMENTS, deployment(), namespace)
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await rawkube.create(PVCS, claim, namespace)
    await rawkube.create(BACKUPBATCHES, batch(), namespace)
    ready = await _phase(rawkube, namespace, "Ready")
    members = ready["status"]["memberConditions"]
    assert [m["target"]["name"] for m in members] == ["data", "web"]
    web_conds = {c["type"]: c["status"] for c in members[1]["conditions"]}
    assert web_conds == {"BackupTargetFound": "True", "StashSidecarInjected": "True"}
    live = await rawkube.get(DEPLOYMENTS, "web", namespace)
    (sidecar,) = [c for c in live["spec"]["template"]["spec"]["containers"] if c["name"] == "stash"]
    assert sidecar["args"][1:3] == ["--invoker-name=wp", "--invoker-kind=BackupBatch"]

    session = await create_backup_session(
        rawkube, {**ready, "kind": "BackupBatch"}, dt.datetime.now(dt.UTC)
    )

    async def initiated() -> list[JSON] | None:
        obj = await rawkube.get(BACKUPSESSIONS, session, namespace)
        targets = (obj.get("status") or {}).get("targets") or []
        return targets if len(targets) == 2 and targets[0].get("totalHosts") else None

    first, second = await eventually(initiated, timeout=30, what="the first member initiated")
    assert first["ref"]["name"] == "data" and "totalHosts" not in second
    assert first["preBackupActions"] == ["InitializeBackendRepository"]


async def test_batch_with_hooks_is_invalid(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await rawkube.create(SECRETS, secret(), namespace)
    await rawkube.create(REPOSITORIES, repository(), namespace)
    hooks = {"preBackup": {"httpGet": {"host": "wp", "port": 80, "path": "/maintenance/on"}}}
    await rawkube.create(BACKUPBATCHES, batch(hooks=hooks), namespace)
    invalid = await _phase(rawkube, namespace, "Invalid")
    (cond,) = [c for c in invalid["status"]["conditions"] if c["type"] == "ValidationPassed"]
    assert "hooks are not supported yet" in cond["message"]
