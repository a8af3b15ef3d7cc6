"""`kubectl stash trigger | pause backup | resume backup` against the real apiserver
(`python -m stash.cli.kubectl`; tests/integration/kubectl runs the rest through kubectl)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from stash.contract.resources import BACKUPBATCHES, BACKUPCONFIGURATIONS, BACKUPSESSIONS
from stash.kube.client import Kube
from stash_dev import ControlPlane
from tests.integration.operator.conftest import create_world

pytestmark = pytest.mark.cluster


def _plugin(cp: ControlPlane, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stash.cli.kubectl",
            f"--kubeconfig={cp.kubeconfig}",
            "-n",
            ns,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_pause_resume_and_trigger(
    rawkube: Kube, control_plane: ControlPlane, stash_crds: list[str], namespace: str
) -> None:
    await create_world(rawkube, namespace)
    done = await asyncio.to_thread(
        _plugin, control_plane, namespace, "pause", "backup", "--backupconfig=bc"
    )
    assert done.returncode == 0, done.stderr
    assert (await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace))["spec"]["paused"] is True
    done = await asyncio.to_thread(
        _plugin, control_plane, namespace, "resume", "backup", "--backupconfig=bc"
    )
    assert done.returncode == 0, done.stderr
    assert (await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace))["spec"]["paused"] is False

    done = await asyncio.to_thread(_plugin, control_plane, namespace, "trigger", "bc")
    assert done.returncode == 0, done.stderr
    (session,) = (await rawkube.list(BACKUPSESSIONS, namespace))["items"]
    assert done.stdout.strip() == f"BackupSession {namespace}/{session['metadata']['name']} created"
    assert session["metadata"]["labels"]["stash.appscode.com/invoker-name"] == "bc"
    assert session["metadata"]["ownerReferences"][0]["kind"] == "BackupConfiguration"


async def test_batches_are_triggered_paused_and_resumed(
    rawkube: Kube, control_plane: ControlPlane, stash_crds: list[str], namespace: str
) -> None:
    await create_world(rawkube, namespace)
    bc = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
    batch = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"name": "wp"},
        "spec": {
            "schedule": "*/5 * * * *",
            "repository": {"name": "repo"},
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5},
            "members": [{"target": bc["spec"]["target"]}],
        },
    }
    await rawkube.create(BACKUPBATCHES, batch, namespace)
    for verb, paused in (("pause", True), ("resume", False)):
        done = await asyncio.to_thread(
            _plugin, control_plane, namespace, verb, "backup", "--backupbatch=wp"
        )
        assert done.returncode == 0, done.stderr
        assert (await rawkube.get(BACKUPBATCHES, "wp", namespace))["spec"]["paused"] is paused
        assert (await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace))["spec"].get(
            "paused"
        ) is not True
    # A plain name is a BackupConfiguration first, then a BackupBatch; kind/name says which.
    for name in ("wp", "backupbatch/wp"):
        done = await asyncio.to_thread(_plugin, control_plane, namespace, "trigger", name)
        assert done.returncode == 0, done.stderr
    sessions = (await rawkube.list(BACKUPSESSIONS, namespace))["items"]
    assert sessions and all(
        s["metadata"]["labels"]["stash.appscode.com/invoker-type"] == "BackupBatch"
        and s["metadata"]["ownerReferences"][0]["kind"] == "BackupBatch"
        for s in sessions
    )


async def test_clear_errors(
    control_plane: ControlPlane, stash_crds: list[str], namespace: str
) -> None:
    missing = await asyncio.to_thread(_plugin, control_plane, namespace, "trigger", "nope")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    no_repo = await asyncio.to_thread(_plugin, control_plane, namespace, "unlock", "repo")
    assert no_repo.returncode == 1 and 'no Repository "repo"' in no_repo.stderr
    bad = await asyncio.to_thread(_plugin, control_plane, namespace, "pause", "backup")
    assert bad.returncode == 2 and "--backupconfig" in bad.stderr and "Traceback" not in bad.stderr
