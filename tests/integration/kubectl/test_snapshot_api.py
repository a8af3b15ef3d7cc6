"""`kubectl get|delete snapshots`: the aggregated Snapshot API, served by this process
behind the real kube-apiserver (front-proxy client certificates, request headers,
SubjectAccessReview), over a Repository on a real REST server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from stash.kube.client import JSON, Kube, Resource
from stash.snapshotapi import SnapshotApiServer
from stash.snapshotapi.server import APISERVICES, NAME
from stash_dev import ControlPlane
from stash_dev.podips import node_address
from tests.integration.kubectl.conftest import Kubectl, World
from tests.support.cluster import eventually

# serial: the one Snapshot APIService
pytestmark = [pytest.mark.cluster, pytest.mark.serial]

SERVICES = Resource("", "v1", "services", "Service")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")


@pytest.fixture
async def snapshot_api(rawkube: Kube, namespace: str, restic_bin: str) -> AsyncIterator[None]:
    """The server, its Service and EndpointSlice (this host), the APIService Available."""
    server = SnapshotApiServer(
        rawkube, namespace=namespace, service="snapshots", port=0, restic_binary=restic_bin
    )
    await server.start()
    try:
        port = {"name": "https", "port": 443, "targetPort": server.port, "protocol": "TCP"}
        await rawkube.create(
            SERVICES, {"metadata": {"name": "snapshots"}, "spec": {"ports": [port]}}, namespace
        )
        labels = {"kubernetes.io/service-name": "snapshots"}
        endpoint = {"addresses": [node_address()], "conditions": {"ready": True}}
        slice_ = {
            "metadata": {"name": "snapshots-1", "labels": labels},
            "addressType": "IPv4",
            "endpoints": [endpoint],
            "ports": [{"name": "https", "port": server.port, "protocol": "TCP"}],
        }
        await rawkube.create(ENDPOINTSLICES, slice_, namespace)

        async def available() -> JSON | None:
            svc = await rawkube.get(APISERVICES, NAME)
            conds = {c["type"]: c for c in (svc.get("status") or {}).get("conditions") or []}
            return svc if conds.get("Available", {}).get("status") == "True" else None

        await eventually(available, timeout=60, what="the APIService Available")
        yield
    finally:
        await server.stop()


async def test_kubectl_gets_and_deletes_snapshots_and_rbac_decides(
    kubectl: Kubectl,
    repo_world: World,
    snapshot_api: None,
    namespace: str,
    control_plane: ControlPlane,
) -> None:
    [snap] = await repo_world.restic.snapshots()
    name = f"repo-{snap.id[:8]}"
    listed = await kubectl("get", "snapshots", "-n", namespace, "-l", "repository=repo")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "REPOSITORY", "HOSTNAME", "CREATED", "AT"]
    assert row.split()[:4] == [name, snap.id[:8], "repo", "web-0"]
    none = await kubectl("get", "snapshots", "-n", namespace, "-l", "hostname=db-0")
    assert none.returncode == 0 and "No resources found" in none.stderr
    one = await kubectl("get", "snapshot", name, "-n", namespace, "-o", "json")
    assert one.returncode == 0, one.stderr
    obj = json.loads(one.stdout)
    assert obj["metadata"]["uid"] == snap.id
    assert obj["status"]["paths"] == [str(repo_world.data)]

    alice = await kubectl(
        "get", "snapshots", "-n", namespace, f"--token={control_plane.user_token('alice')}"
    )
    assert alice.returncode == 1 and "Forbidden" in alice.stderr

    gone = await kubectl("delete", "snapshot", name, "-n", namespace)
    assert gone.returncode == 0, gone.stderr
    assert await repo_world.restic.snapshots() == []
