"""Repositories: finalizer, references to their invokers, and wipeOut deleting exactly
the repository's objects in real S3 storage (moto) before the object goes."""

from __future__ import annotations

import asyncio

import pytest

from stash.contract.resources import REPOSITORIES
from stash.kube.client import JSON, Kube, NotFound
from stash.kube.resources import SECRETS
from tests.integration.operator.conftest import OperatorFactory, create_world
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


async def test_wipe_out_deletes_only_the_repository_prefix(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, moto: MotoServer
) -> None:
    s3 = moto.client()
    bucket = f"wipe-{namespace[-6:]}"
    s3.create_bucket(Bucket=bucket)
    for key in ("team/repo/config", "team/repo/data/00/abc", "team/other/keep", "top-level"):
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
    assert keys == ["team/other/keep", "top-level"]
