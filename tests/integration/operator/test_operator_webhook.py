"""`stash operator` serves its own admission webhook (issue "Installable", item 1): the
apiserver calls the operator process, so a workload is injected in the same admission and
a bad object is refused, with no separate `stash webhook`. Also the two ways a chart runs
it: configurations owned by the chart (the operator writes only their caBundle) and a
certificate mounted from a Secret (cert-manager)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
from pathlib import Path

import pytest

from stash import pki
from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import Kube, KubeError, NotFound
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash.settings import OperatorSettings
from stash.webhook.registration import MUTATING, VALIDATING, configurations
from tests.integration.operator.conftest import (
    OperatorFactory,
    backup_configuration,
    deployment,
    repository,
    secret,
)
from tests.support.cluster import eventually
from tests.support.webhook import wait_until_active

pytestmark = pytest.mark.cluster


def _webhook_settings(namespace: str) -> dict[str, object]:
    # The webhook never answers for the operator's own namespace, so the operator "runs"
    # in another one here (no leader election: no Lease there).
    return {
        "namespace": "stash-system",
        "leader_elect": False,
        "serve_webhook": True,
        "webhook_host": "127.0.0.1",
        "webhook_port": 0,
        "webhook_config_name": f"stash-op-{namespace}",
    }


async def _serving(op: object) -> None:
    async def started() -> bool:
        return getattr(op, "webhook", None) is not None

    await eventually(started, timeout=30, what="the operator's webhook to start")


async def _configs_gone(kube: Kube, name: str) -> bool:
    for res in (MUTATING, VALIDATING):
        try:
            await kube.get(res, name)
            return False
        except NotFound:
            pass
    return True


async def test_the_operator_injects_at_admission_and_refuses_bad_objects(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    extra = _webhook_settings(namespace)
    op = await run_operator(**extra)
    await _serving(op)
    await wait_until_active(rawkube, namespace)

    await rawkube.create(SECRETS, secret(), namespace)
    await rawkube.create(REPOSITORIES, repository(), namespace)
    await rawkube.create(BACKUPCONFIGURATIONS, backup_configuration(), namespace)
    stored = await rawkube.create(DEPLOYMENTS, deployment(), namespace)
    # in the same admission: the object the apiserver returns already has the sidecar
    names = [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]]
    assert names == ["app", "stash"]

    bad = backup_configuration("bad", schedule="*/5 * * *")
    with pytest.raises(KubeError) as refused:
        await rawkube.create(BACKUPCONFIGURATIONS, bad, namespace)
    assert "invalid cron schedule" in refused.value.message

    # a local run removes its registrations when it stops
    assert op.webhook is not None
    await op.webhook.stop()

    async def gone() -> bool:
        return await _configs_gone(rawkube, str(extra["webhook_config_name"]))

    await eventually(gone, timeout=10, what="the local registrations to be removed")


async def test_configurations_owned_by_the_chart_only_get_their_ca_bundle(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    extra = {**_webhook_settings(namespace), "webhook_manage_configurations": False}
    name = str(extra["webhook_config_name"])
    chart_settings = OperatorSettings(**extra, watch_namespace=namespace)  # type: ignore[arg-type]
    mutating, validating = configurations(
        chart_settings,
        b"",
        url_base="https://127.0.0.1:1",  # what a chart renders
    )
    assert mutating is not None and validating is not None
    for config in (mutating, validating):
        config["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "Helm"}
    await rawkube.create(MUTATING, mutating)
    await rawkube.create(VALIDATING, validating)
    try:
        op = await run_operator(**extra)
        await _serving(op)
        assert op.webhook is not None and op.webhook.bundle is not None
        expected = base64.b64encode(op.webhook.bundle.ca_bundle).decode()

        async def bundled() -> bool:
            live = await rawkube.get(MUTATING, name)
            return all(h["clientConfig"].get("caBundle") == expected for h in live["webhooks"])

        await eventually(bundled, timeout=10, what="the caBundle in the chart's configuration")
        live = await rawkube.get(MUTATING, name)
        assert live["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "Helm"}
        assert live["webhooks"][0]["clientConfig"]["url"].startswith("https://127.0.0.1:1/")
    finally:
        for res in (MUTATING, VALIDATING):
            await rawkube.delete(res, name)


async def test_a_mounted_certificate_is_served_and_the_configurations_left_alone(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = pki.issue_ca("cert-manager test CA", now, dt.timedelta(days=1))
    serving = pki.issue_serving_cert(
        ca, ["stash-operator"], ["127.0.0.1"], now, dt.timedelta(days=1)
    )
    (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
    (tmp_path / "tls.key").write_bytes(serving.key_pem)
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    extra = {**_webhook_settings(namespace), "webhook_cert_dir": str(tmp_path)}
    op = await run_operator(**extra)
    await _serving(op)
    assert op.webhook is not None

    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    reader, writer = await asyncio.open_connection("127.0.0.1", op.webhook.port, ssl=ctx)
    writer.close()
    await writer.wait_closed()
    del reader  # the handshake succeeding against the mounted CA is the check
    assert await _configs_gone(rawkube, str(extra["webhook_config_name"]))
