"""Fixtures for `kubectl stash` tests: the real kubectl from the venv finds the plugin on
PATH; a Repository on a real REST server with a few snapshots of small files."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from stash.contract.resources import REPOSITORIES
from stash.kube.client import Kube
from stash.kube.resources import SECRETS
from stash.restic import Restic
from stash_dev import ControlPlane
from tests.integration.conftest import MakeRestic, storage_of
from tests.integration.operator.conftest import rawkube, run_operator  # noqa: F401
from tests.support.chart_tools import kubectl_binary
from tests.support.storage import Storage


@dataclass
class Kubectl:
    """`kubectl stash ...` (and plain kubectl) against the test control plane."""

    binary: str
    kubeconfig: Path
    env: dict[str, str]

    async def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, *args[:1], f"--kubeconfig={self.kubeconfig}", *args[1:]]
        return await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, timeout=timeout, env=self.env
        )

    async def stash(
        self, ns: str, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl stash <args> -n ns`."""
        return await self("stash", *args, "-n", ns, timeout=timeout)


@pytest.fixture
def kubectl(control_plane: ControlPlane, restic_bin: str) -> Kubectl:
    """The venv's kubectl with the venv (kubectl-stash) on PATH and the test restic."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "STASH_RESTIC": restic_bin,
    }
    return Kubectl(kubectl_binary(), control_plane.kubeconfig, env)


@dataclass
class World:
    """A Repository `repo` (Secret `repo-creds`) on a REST server, with a driver for it."""

    storage: Storage
    restic: Restic
    data: Path


@pytest.fixture
async def repo_world(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_restic: MakeRestic,
    rawkube: Kube,  # noqa: F811
    namespace: str,
    stash_crds: list[str],
) -> World:
    """The Repository and its Secret in the test's namespace, initialised, with one
    snapshot of a small tree under `<tmp>/data`."""
    storage = storage_of("rest", request, tmp_path)
    secret = {
        "metadata": {"name": "repo-creds"},
        "data": {k: base64.b64encode(v).decode() for k, v in storage.secret.items()},
    }
    await rawkube.create(SECRETS, secret, namespace)
    repo = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo"},
        "spec": {"backend": storage.backend.to_wire()},
    }
    await rawkube.create(REPOSITORIES, repo, namespace)
    restic = make_restic(storage)
    await restic.init()
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    await restic.backup([str(data)], host="web-0")
    return World(storage, restic, data)
