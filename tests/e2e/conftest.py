"""End-to-end fixtures: reuse the agent tests' runner, RBAC and storage helpers."""

from tests.integration.agent.conftest import agent_rbac, runner  # noqa: F401
from tests.integration.conftest import moto, rest_server, rest_server_bin, restic_bin  # noqa: F401
from tests.integration.operator.conftest import rawkube, run_operator  # noqa: F401
