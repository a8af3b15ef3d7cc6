"""`make run` works: `stash dev demo` backs up and restores on its own control plane,
verifies the bytes, and can be run twice in a row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster


def _stash(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stash.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_backs_up_restores_and_reruns(tmp_path: Path) -> None:
    state = tmp_path / "stash-dev"
    try:
        for run in (1, 2):
            done = _stash("dev", "--dir", str(state), "demo")
            tail = (done.stdout + done.stderr)[-4000:]
            assert done.returncode == 0, f"run {run} failed:\n{tail}"
            assert "==> restored bytes equal the original: True" in done.stdout, tail
            assert "BackupSession web-backup-" in done.stdout and "Succeeded" in done.stdout
            assert (state / "kubeconfig").exists()
    finally:
        _stash("dev", "--dir", str(state), "down", timeout=120)
    assert not state.exists(), "`stash dev down` removes the state"
