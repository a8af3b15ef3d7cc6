"""Shared fixtures: one real control plane per test run, a namespace per test.

The control plane (tests/cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler built from the Kubernetes Go module, plus a stand-in kubelet) starts the
first time a test asks for it. Tests talk only to it, through its own kubeconfig; a
KUBECONFIG or in-cluster setting found on the machine is removed before anything runs.

Under pytest-xdist (`make test`'s first phase) the controller starts the one control
plane before the workers and every worker attaches to it (tests/support/workers.py);
tests that need the cluster to themselves are marked `serial` and run in a phase of
their own.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from stash_dev import ControlPlane, ControlPlaneError
from tests.support import workers
from tests.support.cluster import api_client_for
from tests.support.csi import csi_stack, stack_logs

__all__ = ["csi_stack"]  # one session fixture for the whole run (tests/support/csi.py)

pytest_configure = workers.configure
pytest_unconfigure = workers.unconfigure
pytest_runtest_setup = workers.refuse_serial_in_a_worker

for _var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
    os.environ.pop(_var, None)

_CONTROL_PLANE: list[ControlPlane] = []


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """The real control plane, started once per test run; fails (never skips) if it can't."""
    shared = workers.shared_control_plane(request.config)
    if shared is not None:
        _CONTROL_PLANE.append(shared)
        yield shared  # the xdist controller stops it after the last worker
        _CONTROL_PLANE.clear()
        return
    cp = ControlPlane(tmp_path_factory.mktemp("cluster") / "state", nodes=2)
    try:
        cp.start()
    except ControlPlaneError as exc:
        pytest.fail(f"the test control plane could not start: {exc}", pytrace=False)
    _CONTROL_PLANE.append(cp)
    yield cp
    cp.stop()
    _CONTROL_PLANE.clear()


@pytest.fixture(scope="session")
async def kube(control_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    """An admin kubernetes_asyncio client bound to the test control plane's kubeconfig."""
    api = await api_client_for(control_plane.kubeconfig)
    yield api
    await api.close()


@pytest.fixture
async def namespace(kube: client.ApiClient, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting)."""
    base = request.node.name.lower().replace("_", "-")
    base = "".join(ch for ch in base if ch.isalnum() or ch == "-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(kube)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        await core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the control plane's component logs (and the CSI snapshot stack's) to every
    failing test that used it."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _CONTROL_PLANE and "control_plane" in getattr(item, "fixturenames", ()):
        report.sections.append(("control plane logs", _CONTROL_PLANE[0].logs(tail=40)))
    if report.failed and "csi_stack" in getattr(item, "fixturenames", ()):
        for logs in stack_logs():
            report.sections.append(("CSI snapshot stack logs", logs))


def repo_root() -> Path:
    """The checkout's root directory."""
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
async def stash_crds(kube: client.ApiClient) -> list[str]:
    """Install the committed CRDs (manifests/crds) once and wait until they are Established."""
    ext = client.ApiextensionsV1Api(kube)
    files = sorted((repo_root() / "manifests" / "crds").glob("*.yaml"))
    if not files:
        pytest.fail("manifests/crds is empty: run `make manifests`", pytrace=False)
    names = []
    for path in files:
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        await _create_or_replace_crd(ext, crd, path.name)
        names.append(name)
    for name in names:
        for _ in range(200):
            crd = await ext.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])}
            if conds.get("Established") == "True":
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"CRD {name} never became Established: {conds}", pytrace=False)
    return names


async def _create_or_replace_crd(ext: client.ApiextensionsV1Api, crd: dict, source: str) -> None:
    """Create the CRD, or replace the one there (xdist workers install the same CRDs at
    the same time: a conflict on replace means another worker wrote it first; retry)."""
    name = crd["metadata"]["name"]
    for _ in range(10):
        crd["metadata"].pop("resourceVersion", None)
        try:
            await ext.create_custom_resource_definition(crd)
            return
        except client.ApiException as exc:
            if exc.status != 409:
                pytest.fail(f"the apiserver rejected {source}: {exc.body}", pytrace=False)
        current = await ext.read_custom_resource_definition(name)
        crd["metadata"]["resourceVersion"] = current.metadata.resource_version
        try:
            await ext.replace_custom_resource_definition(name, crd)
            return
        except client.ApiException as exc:
            if exc.status != 409:
                pytest.fail(f"the apiserver rejected {source}: {exc.body}", pytrace=False)
        await asyncio.sleep(0.2)
    pytest.fail(f"CRD {name} could not be written: it kept changing under us", pytrace=False)
