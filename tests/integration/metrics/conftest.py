"""Fixtures of the metrics tests: one real Pushgateway and Prometheus per test run, and
the agent tests' operator, pod runner, RBAC and storage helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.agent.conftest import agent_rbac, runner  # noqa: F401
from tests.integration.conftest import restic_bin  # noqa: F401
from tests.integration.operator.conftest import rawkube, run_operator  # noqa: F401
from tests.support.prometheus import Monitoring, MonitoringUnavailable


@pytest.fixture(scope="session")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    """Pushgateway + Prometheus (scrape interval 1 s) on free loopback ports, started once
    and stopped at the end of the run; a missing binary fails the test with the reason."""
    try:
        stack = Monitoring(tmp_path_factory.mktemp("monitoring"))
        stack.start()
    except MonitoringUnavailable as exc:
        pytest.fail(f"Pushgateway and Prometheus are needed: {exc}", pytrace=False)
    yield stack
    stack.stop()
