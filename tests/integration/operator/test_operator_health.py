"""The operator process tells the truth about itself: /healthz reports an informer that
died (and it is started again), the Secret informer never receives Secret data, and a
leader-election namespace that does not exist is an ERROR saying what to do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiohttp
import pytest

from stash.contract.resources import REPOSITORIES
from stash.kube.client import JSON, Kube
from stash.kube.informer import slim
from stash.kube.resources import NAMESPACES, SECRETS
from stash.operator import Operator
from stash.settings import OperatorSettings
from stash_dev import ControlPlane
from tests.integration.operator.conftest import OperatorFactory, repository
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


async def healthz(op: Operator) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{op.metrics_port}/healthz") as resp,
    ):
        return resp.status, await resp.text()


async def test_an_informer_that_dies_is_reported_by_healthz_and_started_again(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    op = await run_operator()
    assert await healthz(op) == (200, "ok")
    repos = op.caches.repositories

    def poisoned(obj: JSON) -> JSON:
        if obj["metadata"]["name"] == "poison":
            raise RuntimeError("an object this informer cannot handle")
        return slim(obj)

    repos.transform = poisoned
    await rawkube.create(REPOSITORIES, repository("poison"), namespace)

    async def reported() -> str | None:
        status, text = await healthz(op)
        return text if status == 503 else None

    text = await eventually(reported, timeout=20, what="/healthz reporting the dead informer")
    assert "informer repositories" in text and "RuntimeError" in text, text

    repos.transform = slim  # the cause is gone: the restarted informer lists again
    await eventually(
        lambda: _cached(repos, f"{namespace}/poison"), timeout=30, what="repository cached"
    )
    assert await healthz(op) == (200, "ok")


async def _cached(informer: Any, key: str) -> bool | None:
    return True if informer.get(key) is not None else None


async def test_the_secret_informer_is_sent_metadata_only(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received: list[JSON] = []
    from stash import operator as operator_module

    keep = operator_module.metadata_only

    def recording(obj: JSON) -> JSON:
        received.append(json.loads(json.dumps(obj)))
        return keep(obj)

    monkeypatch.setattr(operator_module, "metadata_only", recording)
    before = {"metadata": {"name": "listed"}, "stringData": {"RESTIC_PASSWORD": "listed-secret"}}
    await rawkube.create(SECRETS, before, namespace)
    op = await run_operator()  # lists `listed`
    after = {"metadata": {"name": "watched"}, "stringData": {"RESTIC_PASSWORD": "watched-secret"}}
    await rawkube.create(SECRETS, after, namespace)  # arrives by the watch
    await eventually(
        lambda: _cached(op.caches.secrets, f"{namespace}/watched"), timeout=20, what="watched"
    )
    names = {o["metadata"]["name"] for o in received}
    assert {"listed", "watched"} <= names
    wire = json.dumps(received)
    assert "listed-secret" not in wire and "watched-secret" not in wire
    assert not any("data" in o or "stringData" in o for o in received)
    cached = op.caches.secrets.get(f"{namespace}/listed")
    assert cached is not None and "data" not in cached


async def test_a_missing_lease_namespace_is_one_error_that_says_what_to_do(
    control_plane: ControlPlane,
    stash_crds: list[str],
    rawkube: Kube,
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    lease_ns = f"{namespace}-lease"
    kube = await Kube.connect(control_plane.kubeconfig)
    settings = OperatorSettings(
        watch_namespace=namespace,
        namespace=lease_ns,
        metrics_port=0,
        metrics_host="127.0.0.1",
        lease_duration=4,
        renew_deadline=3,
        retry_period=0.5,
        serve_webhook=False,  # its certificate Secret would want that namespace too
        serve_snapshot_api=False,
    )
    op = Operator(kube, settings)
    task = asyncio.create_task(op.run())
    try:
        await asyncio.wait_for(op.ready.wait(), 30)
        await asyncio.sleep(2 * settings.retry_period)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1, errors
        assert f"namespace {lease_ns}" in errors[0]
        assert f"kubectl create namespace {lease_ns}" in errors[0]
        assert "--operator-namespace" in errors[0]

        await rawkube.create(NAMESPACES, {"metadata": {"name": lease_ns}})

        async def leads() -> bool | None:
            return True if any(" leads" in r.getMessage() for r in caplog.records) else None

        await eventually(leads, timeout=30, what="the operator leading once the namespace exists")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        await kube.close()
        await rawkube.delete(NAMESPACES, lease_ns)
