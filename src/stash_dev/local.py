"""The developer's local control plane under a state directory (`.stash-dev` by default):
start it once in the background and reuse it (`stash dev up`, `make cluster-up`, the
demo), stop it and remove its state (`stash dev down`). Also finds the pinned restic
build (tests/tools/build.sh) the demo's agents use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from stash_dev.controlplane import REPO_ROOT, ControlPlane, ControlPlaneError

TOOLS_SCRIPT = REPO_ROOT / "tests" / "tools" / "build.sh"


def ensure_up(state_dir: Path, nodes: int = 2) -> tuple[ControlPlane, bool]:
    """The running control plane of `state_dir`, or a new one; (handle, started_now).
    `state_dir/kubeconfig` is its admin kubeconfig either way."""
    if (state_dir / "state.json").exists():
        cp = ControlPlane.attach(state_dir)
        if cp.running():
            return cp, False
        cp.stop()
    cp = ControlPlane(state_dir / "cluster", nodes=nodes)
    cp.start()
    shutil.copy(cp.kubeconfig, state_dir / "kubeconfig")
    shutil.copy(cp.state_dir / "state.json", state_dir / "state.json")
    return cp, True


def tear_down(state_dir: Path) -> bool:
    """Stop the control plane of `state_dir` (if any) and remove the directory."""
    stopped = False
    if (state_dir / "state.json").exists():
        ControlPlane.attach(state_dir).stop()
        stopped = True
    shutil.rmtree(state_dir, ignore_errors=True)
    return stopped


def tools_bin() -> Path:
    """Directory with the pinned `restic` and `rest-server` (built when missing)."""
    if not TOOLS_SCRIPT.exists():
        raise ControlPlaneError(f"{TOOLS_SCRIPT} is missing; run from a stash source checkout")
    proc = subprocess.run([str(TOOLS_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"building restic failed ({TOOLS_SCRIPT})")
    return Path(proc.stdout.strip().splitlines()[-1])
