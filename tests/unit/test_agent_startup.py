"""What a pod's `stash restore` and `stash run-backup` load before their first request.

An init-container's start-up is part of every restore's time (issue #19): the agent's
commands must not import the kubernetes_asyncio client (every generated model), the
dev tooling's CLI plugin, the operator's pydantic-settings, and (restore) the metrics
client it only needs to push. Such a regression is silent, so it is checked here; the
seconds themselves are `bench/restore_e2e.py`'s business.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

#: Loaded by none of the agent's pod commands before their first request.
NEVER = ("kubernetes_asyncio", "stash_dev", "pydantic_settings", "stash.settings")

PROBE = """
import asyncio, sys
from stash.cli.main import main
from stash.kube.client import Kube
from stash.kube.transport import InClusterConfigError

code = main([{command!r}, "--invoker-name", "x", "--target-kind", "Deployment",
             "--target-name", "y"])
try:
    asyncio.run(Kube.connect())  # no kubeconfig: the pod's ServiceAccount
except InClusterConfigError:
    pass
print(repr((code, sorted(sys.modules))))
"""


def _loaded_by(command: str) -> tuple[int, list[str]]:
    """(exit code, modules loaded) of `stash <command>` run where it finds no pod: it
    imports what it runs with, then stops at the missing POD_NAMESPACE."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("POD_", "KUBERNETES_", "PYTHONPROFILEIMPORTTIME"))
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(command=command)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    code, modules = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    return int(code), list(modules)


def _heavy(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted({m for m in modules if m.startswith(prefixes)})


@pytest.mark.parametrize("command", ["restore", "run-backup"])
def test_an_agent_command_starts_without_the_kubernetes_client_or_dev_tooling(
    command: str,
) -> None:
    code, modules = _loaded_by(command)
    assert code == 2  # stopped at the missing namespace, after its imports
    assert "stash.agent.context" in modules  # it did get as far as the agent's code
    assert _heavy(modules, NEVER) == []


def test_the_restore_command_loads_no_metrics_client() -> None:
    _, modules = _loaded_by("restore")
    assert "stash.agent.restore" in modules
    assert _heavy(modules, ("prometheus_client", "stash.sessionmetrics")) == []
