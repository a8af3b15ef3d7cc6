"""BackupBatch and RestoreBatch against the real control plane (no data moved here; the
end-to-end tests run the agents): a Deployment member gets the batch's sidecar, the
batch becomes Ready with memberConditions, a session of a Sequential batch leaves the
second member Pending, and the batch's global preBackup hook runs (once) before any
member starts: one answering 500 fails the session with no member started."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from stash.contract.resources import BACKUPBATCHES, BACKUPSESSIONS, REPOSITORIES
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, Resource
from stash.kube.resources import DEPLOYMENTS, SECRETS
from tests.integration.operator.conftest import OperatorFactory, deployment, repository, secret
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

EVENTS = Resource("", "v1", "events", "Event")
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


class Receiver:
    """A local endpoint for the batch's global hooks: records paths, answers `status`."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.status = 200
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return web.Response(status=self.status, text=f"maintenance said {self.status}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_get("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.port = runner.addresses[0][1]
    yield rec
    await runner.cleanup()


async def test_global_pre_backup_hook_runs_before_any_member(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, receiver: Receiver
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
    on = {"httpGet": {"host": "127.0.0.1", "port": receiver.port, "path": "/maintenance/on"}}
    await rawkube.create(BACKUPBATCHES, batch(hooks={"preBackup": on}), namespace)
    ready = await _phase(rawkube, namespace, "Ready")

    # S5: the pre-hook answers 500 -> the session fails and no member starts
    receiver.status = 500
    failed = await create_backup_session(
        rawkube, {**ready, "kind": "BackupBatch"}, dt.datetime.now(dt.UTC)
    )

    async def final() -> JSON | None:
        obj = await rawkube.get(BACKUPSESSIONS, failed, namespace)
        return obj if (obj.get("status") or {}).get("phase") == "Failed" else None

    session = await eventually(final, timeout=30, what="the session Failed")
    conds = {c["type"]: c for c in session["status"]["conditions"]}
    hook = conds["GlobalPreBackupHookSucceeded"]
    assert hook["status"] == "False"
    assert (
        "preBackup hook (httpGet) failed" in hook["message"] and "answered 500" in hook["message"]
    )
    assert not any(t.get("totalHosts") for t in session["status"].get("targets") or [])
    assert receiver.paths == ["/maintenance/on"]
    events = (await rawkube.list(EVENTS, namespace))["items"]
    reasons = {e["reason"]: e["message"] for e in events if e["involvedObject"]["name"] == failed}
    assert "maintenance said 500" in reasons["GlobalPreBackupHookFailed"]

    # answering 200, the hook passes once and the first member starts
    receiver.status = 200
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    ok = await create_backup_session(rawkube, {**ready, "kind": "BackupBatch"}, later)

    async def initiated() -> JSON | None:
        obj = await rawkube.get(BACKUPSESSIONS, ok, namespace)
        targets = (obj.get("status") or {}).get("targets") or []
        return obj if targets and targets[0].get("totalHosts") else None

    running = await eventually(initiated, timeout=30, what="the first member initiated")
    conds = {c["type"]: c for c in running["status"]["conditions"]}
    assert conds["GlobalPreBackupHookSucceeded"]["status"] == "True"
    assert receiver.paths == ["/maintenance/on", "/maintenance/on"]
