"""`kubectl get|delete snapshots` against the operator as `stash operator` runs it: the
operator serves the Snapshot API next to its other work, registers the APIService and
(run outside the cluster, as here) the Service and EndpointSlice that lead the real
kube-apiserver's aggregator to it; a PVC is backed up to S3 by a real Job-model backup;
real kubectl lists the snapshot (a user without RBAC on snapshots gets 403), and
deleting it removes it from the restic repository."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS, REPOSITORIES
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, NotFound
from stash.kube.resources import JOBS, PVCS, SECRETS
from stash.snapshotapi.server import APISERVICES, NAME
from stash_dev import ControlPlane
from stash_dev.podips import node_address
from stash_dev.podrunner import PodRunner
from tests.e2e.jobs import claim_dir, exists, run_job
from tests.integration.agent.conftest import agent_env, write_tree
from tests.integration.conftest import (  # noqa: F401
    MakeRestic,
    make_restic,
    restic_options,
    storage_of,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.chart_tools import kubectl_binary
from tests.support.cluster import eventually

# serial: the one Snapshot APIService
pytestmark = [pytest.mark.cluster, pytest.mark.serial]


async def _kubectl(
    control_plane: ControlPlane, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [kubectl_binary(), f"--kubeconfig={control_plane.kubeconfig}", *args]
    argv += [f"--token={token}"] if token else []
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    return await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=120, env=env
    )


async def _available(kube: Kube) -> JSON | None:
    try:
        svc = await kube.get(APISERVICES, NAME)
    except NotFound:
        return None
    conds = {c["type"]: c for c in (svc.get("status") or {}).get("conditions") or []}
    return svc if conds.get("Available", {}).get("status") == "True" else None


def _backup_configuration(restic_bin: str) -> JSON:
    # No images here: the container env puts the venv's `stash` and the test restic on
    # PATH, and the pod runs as root (this host's Python lives under /root).
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "pvc-backup"},
        "spec": {
            "task": {"name": "pvc-backup"},
            "schedule": "0 * * * *",
            "repository": {"name": "pvc-repo"},
            "target": {
                "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
                "volumeMounts": [{"name": "data", "mountPath": "/source/data"}],
                "paths": ["/source/data"],
            },
            "retentionPolicy": {"name": "keep-last-3", "keepLast": 3, "prune": True},
            "runtimeSettings": {
                "container": {"env": agent_env(restic_bin)},
                "pod": {"securityContext": {"runAsUser": 0}},
            },
        },
    }


async def _backup(kube: Kube, runner: PodRunner, ns: str, restic_bin: str) -> JSON:
    """A PVC with a few files, backed up by a Job; the Succeeded BackupSession."""
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await kube.create(PVCS, claim, ns)
    write_tree(await claim_dir(kube, ns, "data"), {"a.txt": b"alpha\n", "d/b.bin": os.urandom(9)})
    await kube.create(BACKUPCONFIGURATIONS, _backup_configuration(restic_bin), ns)

    async def ready() -> JSON | None:
        bc = await kube.get(BACKUPCONFIGURATIONS, "pvc-backup", ns)
        return bc if (bc.get("status") or {}).get("phase") == "Ready" else None

    bc = await eventually(ready, timeout=30, what="BackupConfiguration Ready")
    session = await create_backup_session(kube, bc, dt.datetime.fromtimestamp(1.7e9, dt.UTC))
    job = f"stash-backup-{session}-0"
    await eventually(lambda: exists(kube, JOBS, job, ns), timeout=30, what=f"Job {job}")
    await run_job(kube, runner, ns, job)

    async def succeeded() -> JSON | None:
        s = await kube.get(BACKUPSESSIONS, session, ns)
        phase = (s.get("status") or {}).get("phase")
        assert phase != "Failed", s["status"]
        return s if phase == "Succeeded" else None

    return await eventually(succeeded, timeout=60, what="the BackupSession Succeeded")


async def test_kubectl_lists_and_deletes_the_snapshots_of_a_backup_through_the_operator(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    control_plane: ControlPlane,
    rawkube: Kube,
    run_operator: OperatorFactory,
    runner: PodRunner,
    make_restic: MakeRestic,  # noqa: F811
    restic_bin: str,
    namespace: str,
) -> None:
    op = await run_operator(
        serve_snapshot_api=True,
        snapshot_api_endpoint=node_address(),
        snapshot_api_port=0,
        restic=restic_bin,
    )
    storage = storage_of("s3", request, tmp_path)
    secret = {
        "metadata": {"name": "s3-secret"},
        "data": {k: base64.b64encode(v).decode() for k, v in storage.secret.items()},
    }
    await rawkube.create(SECRETS, secret, namespace)
    backend = {**storage.backend.to_wire(), "storageSecretName": "s3-secret"}
    repo = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "pvc-repo"},
        "spec": {"backend": backend},
    }
    await rawkube.create(REPOSITORIES, repo, namespace)
    await eventually(lambda: _available(rawkube), timeout=60, what="the APIService Available")

    await _backup(rawkube, runner, namespace, restic_bin)
    restic = make_restic(storage)
    [snap] = await restic.snapshots()
    name = f"pvc-repo-{snap.id[:8]}"

    listed = await _kubectl(control_plane, "get", "snapshots", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "REPOSITORY", "HOSTNAME", "CREATED", "AT"]
    assert row.split()[:4] == [name, snap.id[:8], "pvc-repo", "host-0"]
    selected = await _kubectl(
        control_plane, "get", "snapshots", "-n", namespace, "-l", "repository=pvc-repo", "-o=json"
    )
    assert selected.returncode == 0, selected.stderr
    [item] = json.loads(selected.stdout)["items"]
    assert item["metadata"]["uid"] == snap.id and item["status"]["paths"] == ["/source/data"]

    alice = await _kubectl(
        control_plane, "get", "snapshots", "-n", namespace, token=control_plane.user_token("alice")
    )
    assert alice.returncode == 1 and "Forbidden" in alice.stderr, alice.stderr

    gone = await _kubectl(control_plane, "delete", "snapshot", name, "-n", namespace)
    assert gone.returncode == 0, gone.stderr
    assert await restic.snapshots() == []
    empty = await _kubectl(control_plane, "get", "snapshots", "-n", namespace)
    assert empty.returncode == 0 and "No resources found" in empty.stderr, empty.stderr
    assert op.snapshot_api.server is not None  # it served all along
