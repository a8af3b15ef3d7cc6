"""The webhook's certificates against the real apiserver: rotation with the caBundle kept
in step, the shared Secret store, and `stash webhook` run as a user would run it."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest

from stash.kube.client import Kube, NotFound, Resource
from stash.settings import OperatorSettings
from stash.webhook.certs import SecretCertStore, plan
from stash.webhook.registration import MUTATING, VALIDATING
from stash.webhook.server import WebhookServer
from stash_dev import ControlPlane
from tests.support.cluster import eventually
from tests.support.webhook import wait_until_active

pytestmark = pytest.mark.cluster

DAY = dt.timedelta(days=1)


@pytest.fixture
async def raw(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    kube = await Kube.connect(control_plane.kubeconfig)
    yield kube
    await kube.close()


def settings_for(namespace: str) -> OperatorSettings:
    return OperatorSettings(
        webhook_host="127.0.0.1", webhook_port=0, webhook_config_name=f"stash-tls-{namespace}"
    )


async def published_bundle(raw: Kube, name: str) -> set[bytes]:
    bundles = set()
    for res in (MUTATING, VALIDATING):
        config = await raw.get(res, name)
        bundles |= {base64.b64decode(h["clientConfig"]["caBundle"]) for h in config["webhooks"]}
    return bundles


async def test_ca_rotation_publishes_the_new_ca_before_serving_its_certificate(
    raw: Kube, stash_crds: list[str], namespace: str
) -> None:
    real_now = dt.datetime.now(dt.UTC)
    server = WebhookServer(
        settings_for(namespace),
        raw,
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        clock=lambda: real_now - 700 * DAY,  # the CA was made 700 of its 1000 days ago
        ca_lifetime=1000 * DAY,
        cert_lifetime=1000 * DAY,
        propagation_delay=1.0,
    )
    await server.start()
    try:
        await wait_until_active(raw, namespace)
        first = server.bundle
        assert first is not None
        assert await published_bundle(raw, server.settings.webhook_config_name) == {first.ca_cert}

        server.clock = lambda: dt.datetime.now(dt.UTC)  # 70% of the CA's life: due
        assert await server.rotate() is True
        second = server.bundle
        assert second is not None and second.ca_cert != first.ca_cert
        assert second.previous_ca == first.ca_cert  # the old CA stays trusted for now
        published = await published_bundle(raw, server.settings.webhook_config_name)
        assert published == {second.ca_cert + first.ca_cert}

        # the apiserver still reaches us, now verifying the certificate the new CA signed
        await wait_until_active(raw, namespace)
        assert await server.rotate() is False  # nothing further is due
    finally:
        await server.stop()
    for res in (MUTATING, VALIDATING):
        with pytest.raises(NotFound):
            await raw.get(res, server.settings.webhook_config_name)


async def test_serving_certificate_rotation_keeps_the_ca(
    raw: Kube, stash_crds: list[str], namespace: str
) -> None:
    real_now = dt.datetime.now(dt.UTC)
    server = WebhookServer(
        settings_for(namespace),
        raw,
        namespace_selector={"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        clock=lambda: real_now - 300 * DAY,
        cert_lifetime=400 * DAY,
    )
    await server.start()
    try:
        first = server.bundle
        assert first is not None
        server.clock = lambda: dt.datetime.now(dt.UTC)  # 75% of the certificate's life
        assert await server.rotate() is True
        assert server.bundle is not None
        assert server.bundle.ca_cert == first.ca_cert and server.bundle.cert != first.cert
        assert await published_bundle(raw, server.settings.webhook_config_name) == {first.ca_cert}
        await wait_until_active(raw, namespace)
    finally:
        await server.stop()


async def test_replicas_share_one_bundle_through_the_secret(raw: Kube, namespace: str) -> None:
    now = dt.datetime.now(dt.UTC)
    a = SecretCertStore(raw, namespace, "stash-webhook-tls")
    b = SecretCertStore(raw, namespace, "stash-webhook-tls")
    assert await a.load() is None and await b.load() is None
    mine = plan(None, ["svc"], [], now)
    theirs = plan(None, ["svc"], [], now)
    assert await a.save(mine) == mine
    assert await b.save(theirs) == mine  # lost the race: use the winner's bundle

    assert await a.load() == mine
    assert await b.load() == mine
    renewed = plan(mine, ["svc", "svc.ns"], [], now)  # a name was added
    assert await a.save(renewed) == renewed
    assert await b.save(plan(mine, ["svc", "other"], [], now)) == renewed  # stale: loses


async def test_stash_webhook_command_registers_serves_and_cleans_up(
    control_plane: ControlPlane, raw: Kube, stash_crds: list[str], namespace: str
) -> None:
    name = f"stash-cli-{namespace}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASH_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stash.cli.main", "webhook",
        "--kubeconfig", str(control_plane.kubeconfig),
        "--webhook-host", "127.0.0.1", "--webhook-port", "0",
        "--config-name", name, "--namespace", "stash-system",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:

        async def registered() -> str | None:
            try:
                config = await raw.get(VALIDATING, name)
            except NotFound:
                return None
            url: str = config["webhooks"][0]["clientConfig"]["url"]
            return url

        url = await eventually(registered, timeout=30, what="the CLI's registration")
        assert url.startswith("https://127.0.0.1:")
        await wait_until_active(raw, namespace)
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, output.decode()
        # Not a terminal: one JSON object per line (stash.logs).
        records = [json.loads(line) for line in output.decode().splitlines()]
        assert any(r["message"].startswith("admission webhook serving") for r in records)
        remaining = [res.kind for res in (MUTATING, VALIDATING) if await _exists(raw, res, name)]
        assert remaining == [], "the command left its registrations behind"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for res in (MUTATING, VALIDATING):  # never leave a cluster-wide webhook behind
            await raw.delete(res, name)


async def _exists(raw: Kube, res: Resource, name: str) -> bool:
    try:
        await raw.get(res, name)
    except NotFound:
        return False
    return True
