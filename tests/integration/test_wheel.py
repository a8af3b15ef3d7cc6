"""The image recipe's Python half, without a container runtime: the wheel builds from the
checkout, installs into a clean venv with the pinned constraints and without the test and
dev extras, and its entry points run (what the Dockerfile's last stage does)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stash import __version__

ROOT = Path(__file__).resolve().parents[2]


def _run(*cmd: str | Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="session")  # once per run, on the worker of its group
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv holding only the wheel and its runtime dependencies."""
    tmp = tmp_path_factory.mktemp("wheel")
    # What the Dockerfile copies, so the build leaves nothing in the checkout.
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
        "--wheel-dir", tmp / "dist", source,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    wheels = list((tmp / "dist").glob("stash-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    made = _run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    done = _run(
        venv / "bin" / "pip", "install", "--disable-pip-version-check", "-q",
        "-c", ROOT / "constraints.txt", wheels[0],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (tmp / "wheel-files.txt").write_text("\n".join(zipfile.ZipFile(wheels[0]).namelist()))
    return venv / "bin"


def test_the_wheel_holds_no_dev_tooling(installed: Path) -> None:
    names = (installed.parent.parent / "wheel-files.txt").read_text().splitlines()
    assert any(n.startswith("stash/operator.py") for n in names)
    dev = [n for n in names if n.startswith("stash_dev/") or "devcluster" in n]
    dev += [n for n in names if any(w in n for w in ("kubelet", "podrunner", "controlplane"))]
    assert dev == [], "the dev control plane, kubelet stand-in or pod runner is in the wheel"


def test_stash_dev_is_not_offered_without_the_dev_tools(installed: Path) -> None:
    done = _run(installed / "stash", "dev", "demo", timeout=60)
    assert done.returncode == 2
    assert "dev tools (stash_dev) are not installed" in done.stderr


def test_stash_reports_its_version(installed: Path) -> None:
    done = _run(installed / "stash", "--version", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"stash {__version__}"


@pytest.mark.parametrize("command", ["operator", "agent", "webhook", "crds"])
def test_entry_points_run_from_the_wheel(installed: Path, command: str) -> None:
    done = _run(installed / "stash", command, "--help", timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"usage: stash {command}" in done.stdout


def test_operator_options_the_chart_passes_exist(installed: Path) -> None:
    done = _run(installed / "stash", "operator", "--help", timeout=60)
    for option in ("--operator-namespace", "--leader-elect", "--metrics-port", "--webhook-port"):
        assert option in done.stdout


def test_no_test_or_dev_extras_are_installed(installed: Path) -> None:
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('pytest', 'ruff', 'mypy', 'moto') if u.find_spec(m)])"
    )
    done = _run(installed / "python", "-c", probe, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
