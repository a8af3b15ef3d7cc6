"""`stash operator`, the backup sidecar and a job step, run as a cluster runs them and
stopped as a kubelet stops them (SIGTERM), or ending on their own after a failure, leave
no aiohttp session, connector or asyncio task open: their output carries none of the
reports `stash_dev.leaks` looks for ("Unclosed client session", "Unclosed connector",
"Task was destroyed but it is pending", "Event loop is closed"), and they exit with the
status their docs give (issue #19 item 5)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import Kube
from stash_dev import ControlPlane
from stash_dev.leaks import leak_lines
from tests.integration.operator.conftest import create_world
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


def _start(args: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "stash.cli.main", *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "STASH_LOG_FORMAT": "text", **env},
        start_new_session=True,
    )


async def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    return await asyncio.to_thread(proc.wait, 60)


async def _ready(kube: Kube, ns: str) -> bool:
    bc = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
    return (bc.get("status") or {}).get("phase") == "Ready"


async def test_the_operator_stopped_while_a_session_is_open_leaves_nothing_open(
    rawkube: Kube,
    control_plane: ControlPlane,
    stash_crds: list[str],
    namespace: str,
    tmp_path: Path,
) -> None:
    log = tmp_path / "operator.log"
    op = _start(
        [
            "operator",
            f"--kubeconfig={control_plane.kubeconfig}",
            f"--namespace={namespace}",
            f"--operator-namespace={namespace}",
        ],
        log,
        STASH_METRICS_PORT="0",
        STASH_METRICS_HOST="127.0.0.1",
        STASH_SERVE_WEBHOOK="false",
        STASH_SERVE_SNAPSHOT_API="false",
    )
    try:
        await create_world(rawkube, namespace)
        await eventually(lambda: _ready(rawkube, namespace), timeout=60, what="bc Ready")
        bc = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
        name = await create_backup_session(rawkube, bc, dt.datetime.now(dt.UTC))
        # The session waits for a sidecar that never comes; the operator holds it open.
        await eventually(lambda: _phase(rawkube, namespace, name), timeout=30, what="a phase")
    finally:
        code = await _stop(op)
    output = log.read_text(errors="replace")
    assert code == 0, output[-3000:]
    assert leak_lines(output) == [], output[-3000:]


async def _phase(kube: Kube, ns: str, name: str) -> str | None:
    phase = ((await kube.get(BACKUPSESSIONS, name, ns)).get("status") or {}).get("phase")
    return str(phase) if phase else None


async def _logged(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


def _agent_env(namespace: str) -> dict[str, str]:
    return {"POD_NAMESPACE": namespace, "POD_NAME": "web-0", "NODE_NAME": "node-0"}


async def test_the_sidecar_stopped_while_watching_leaves_nothing_open(
    rawkube: Kube,
    control_plane: ControlPlane,
    stash_crds: list[str],
    namespace: str,
    tmp_path: Path,
) -> None:
    await create_world(rawkube, namespace)
    log = tmp_path / "sidecar.log"
    sidecar = _start(
        [
            "run-backup",
            f"--kubeconfig={control_plane.kubeconfig}",
            "--invoker-name=bc",
            "--target-kind=Deployment",
            "--target-name=web",
            f"--scratch-dir={tmp_path / 'scratch'}",
        ],
        log,
        **_agent_env(namespace),
    )
    try:
        await eventually(
            lambda: _logged(log, "watching BackupSessions"), timeout=60, what="the sidecar"
        )
    finally:
        code = await _stop(sidecar)
    output = log.read_text(errors="replace")
    assert code == 143, output[-3000:]  # 128 + SIGTERM, as documented for the agent
    assert leak_lines(output) == [], output[-3000:]


async def test_a_job_step_that_fails_leaves_nothing_open(
    control_plane: ControlPlane, stash_crds: list[str], namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "restore.log"
    step = _start(
        [
            "restore",
            f"--kubeconfig={control_plane.kubeconfig}",
            "--invoker-kind=RestoreSession",
            "--invoker-name=absent",
            "--target-kind=Deployment",
            "--target-name=web",
            f"--scratch-dir={tmp_path / 'scratch'}",
        ],
        log,
        **_agent_env(namespace),
    )
    code = await asyncio.to_thread(step.wait, 60)
    output = log.read_text(errors="replace")
    assert code == 1, output[-3000:]
    assert "RestoreSession" in output and "does not exist" in output
    assert leak_lines(output) == [], output[-3000:]
