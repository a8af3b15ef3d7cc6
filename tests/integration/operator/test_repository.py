"""Repositories: finalizer, references to their invokers, and wipeOut deleting exactly
the repository's objects in real S3 storage (moto) before the object goes — never while
another invoker still uses it, and never for longer than its deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import JSON, Kube, NotFound, Resource
from stash.kube.resources import SECRETS
from tests.integration.operator.conftest import (
    OperatorFactory,
    backup_configuration,
    create_world,
)
from tests.support.cluster import eventually
from tests.support.storage import S3_KEY_ID, S3_SECRET, MotoServer

pytestmark = pytest.mark.cluster


async def test_references_list_the_invokers(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    await create_world(rawkube, namespace)

    async def refs() -> list[JSON] | None:
        repo = await rawkube.get(REPOSITORIES, "repo", namespace)
        return (repo.get("status") or {}).get("references") or None

    found = await eventually(refs, timeout=30, what="status.references")
    assert found == [
        {
            "apiGroup": "stash.appscode.com",
            "kind": "BackupConfiguration",
            "name": "bc",
            "namespace": namespace,
        }
    ]
    repo = await rawkube.get(REPOSITORIES, "repo", namespace)
    assert "stash" in repo["metadata"]["finalizers"]

    # a list someone else rewrites is put back; an invoker that goes leaves it
    emptied = {"status": {"references": []}}
    await rawkube.patch(REPOSITORIES, "repo", emptied, namespace, subresource="status")
    assert await eventually(refs, timeout=30, what="status.references restored") == found
    await rawkube.delete(BACKUPCONFIGURATIONS, "bc", namespace)

    async def emptied_by_operator() -> bool:
        return await refs() is None

    await eventually(emptied_by_operator, timeout=60, what="status.references without bc")


async def test_wipe_out_deletes_only_the_repository_prefix(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, moto: MotoServer
) -> None:
    s3 = moto.client()
    bucket = f"wipe-{namespace[-6:]}"
    s3.create_bucket(Bucket=bucket)
    for key in (
        "team/repo/config",
        "team/repo/data/00/abc",
        "team/other/keep",
        "team/repo-old/keep",
        "team/repox",
        "top-level",
    ):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    await rawkube.create(
        SECRETS,
        {
            "metadata": {"name": "s3"},
            "stringData": {
                "RESTIC_PASSWORD": "pw",
                "AWS_ACCESS_KEY_ID": S3_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            },
        },
        namespace,
    )
    await run_operator()
    repo = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "gone"},
        "spec": {
            "wipeOut": True,
            "backend": {
                "storageSecretName": "s3",
                "s3": {"endpoint": moto.endpoint, "bucket": bucket, "prefix": "/team/repo"},
            },
        },
    }
    await rawkube.create(REPOSITORIES, repo, namespace)

    async def finalized() -> bool:
        obj = await rawkube.get(REPOSITORIES, "gone", namespace)
        return "stash" in (obj["metadata"].get("finalizers") or [])

    await eventually(finalized, timeout=30, what="the finalizer")
    await rawkube.delete(REPOSITORIES, "gone", namespace)

    async def deleted() -> bool:
        try:
            await rawkube.get(REPOSITORIES, "gone", namespace)
        except NotFound:
            return True
        return False

    await eventually(deleted, timeout=30, what="the Repository to go")
    keys = await asyncio.to_thread(
        lambda: sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    )
    assert keys == ["team/other/keep", "team/repo-old/keep", "team/repox", "top-level"]


EVENTS = Resource("", "v1", "events", "Event")


async def _s3_secret(kube: Kube, ns: str) -> None:
    await kube.create(
        SECRETS,
        {
            "metadata": {"name": "s3"},
            "stringData": {
                "RESTIC_PASSWORD": "pw",
                "AWS_ACCESS_KEY_ID": S3_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            },
        },
        ns,
    )


def _wiped_repository(name: str, endpoint: str, bucket: str) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name},
        "spec": {
            "wipeOut": True,
            "backend": {
                "storageSecretName": "s3",
                "s3": {"endpoint": endpoint, "bucket": bucket, "prefix": "team/repo"},
            },
        },
    }


async def _delete_and_wait(kube: Kube, ns: str, name: str, timeout: float = 30) -> None:
    async def finalized() -> bool:
        obj = await kube.get(REPOSITORIES, name, ns)
        return "stash" in (obj["metadata"].get("finalizers") or [])

    await eventually(finalized, timeout=30, what="the finalizer")
    await kube.delete(REPOSITORIES, name, ns)

    async def deleted() -> bool:
        try:
            await kube.get(REPOSITORIES, name, ns)
        except NotFound:
            return True
        return False

    await eventually(deleted, timeout=timeout, what=f"Repository {name} to go")


async def _reasons(kube: Kube, ns: str, name: str) -> dict[str, str]:
    events = (await kube.list(EVENTS, ns))["items"]
    return {e["reason"]: e["message"] for e in events if e["involvedObject"]["name"] == name}


def _keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


async def test_wipe_out_waits_for_other_users_then_keeps_the_data(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    moto: MotoServer,
) -> None:
    s3 = moto.client()
    bucket = f"used-{namespace[-6:]}"
    s3.create_bucket(Bucket=bucket)
    for key in ("team/repo/config", "team/repo/data/00/abc"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    await _s3_secret(rawkube, namespace)
    await run_operator(wipe_out_wait=4.0, wipe_out_recheck=0.5)
    for name in ("kept", "freed"):
        await rawkube.create(
            REPOSITORIES, _wiped_repository(name, moto.endpoint, bucket), namespace
        )
        bc = backup_configuration(f"{name}-user")
        bc["spec"]["repository"] = {"name": name}
        await rawkube.create(BACKUPCONFIGURATIONS, bc, namespace)

    # still used when the wait is over: the data is kept, and the Repository released
    await _delete_and_wait(rawkube, namespace, "kept")
    reasons = await _reasons(rawkube, namespace, "kept")
    assert "still used by BackupConfiguration" in reasons["WipeOutRefused"]
    assert "WipedOut" not in reasons
    assert await asyncio.to_thread(_keys, s3, bucket) == [
        "team/repo/config",
        "team/repo/data/00/abc",
    ]

    # the user goes while the deletion waits: then the data goes too
    async def finalized() -> bool:
        obj = await rawkube.get(REPOSITORIES, "freed", namespace)
        return "stash" in (obj["metadata"].get("finalizers") or [])

    await eventually(finalized, timeout=30, what="the finalizer")
    await rawkube.delete(REPOSITORIES, "freed", namespace)
    await asyncio.sleep(1.0)
    await rawkube.get(REPOSITORIES, "freed", namespace)  # still waiting
    await rawkube.delete(BACKUPCONFIGURATIONS, "freed-user", namespace)

    async def wiped() -> bool:
        return await asyncio.to_thread(_keys, s3, bucket) == []

    await eventually(wiped, timeout=30, what="the wipe-out after the user went")
    assert "WipedOut" in await _reasons(rawkube, namespace, "freed")


@pytest.fixture
async def silent_endpoint() -> AsyncIterator[str]:
    """An endpoint that accepts connections and never answers (a hung storage)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()
    with contextlib.suppress(Exception):
        await server.wait_closed()


async def test_a_wipe_out_that_hangs_is_given_up_and_reported(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    silent_endpoint: str,
) -> None:
    await _s3_secret(rawkube, namespace)
    await run_operator(wipe_out_timeout=2.0)
    await rawkube.create(REPOSITORIES, _wiped_repository("hung", silent_endpoint, "b"), namespace)
    await _delete_and_wait(rawkube, namespace, "hung", timeout=20)
    reasons = await _reasons(rawkube, namespace, "hung")
    assert "did not finish within 2s" in reasons["WipeOutFailed"]
