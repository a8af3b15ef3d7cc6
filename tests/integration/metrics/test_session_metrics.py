"""Session metrics on a real Pushgateway and Prometheus (stash-api.md §7): after a real
backup (the injected sidecar, run by the pod runner) and a real restore, Prometheus
returns the session, target, host and repository families under both name sets with
the documented labels; with no Pushgateway configured the operator exports the same
families on its /metrics; a Pushgateway that cannot be reached, or does not answer
within the timeout, is recorded as such and fails nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from stash.contract.resources import BACKUPSESSIONS, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.status import update_status
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import finished, ready_invoker, trigger
from tests.integration.metrics.world import LABELS, back_up, condition, names_of, restore
from tests.integration.operator.conftest import OperatorFactory, create_world
from tests.support.cluster import eventually
from tests.support.prometheus import Monitoring
from tests.support.storage import S3_KEY_ID, S3_SECRET, MotoServer, free_port

pytestmark = pytest.mark.cluster

BACKUP_KINDS = ("session", "target", "host", "repository")
RESTORE_KINDS = ("restore session", "restore target", "restore host")
SCRAPE_LABELS = {"__name__", "job", "instance"}


async def _series(monitoring: Monitoring, selector: str, want: set[str]) -> dict[str, JSON]:
    """name -> labels of the series Prometheus returns for `selector`, once it has every
    name in `want`."""

    async def probe() -> dict[str, JSON] | None:
        found = {r["metric"]["__name__"]: r["metric"] for r in await monitoring.query(selector)}
        return found if want <= set(found) else None

    try:
        return await eventually(probe, timeout=30, interval=0.5, what=f"{selector} in Prometheus")
    except AssertionError:
        got = {r["metric"]["__name__"] for r in await monitoring.query(selector)}
        raise AssertionError(f"Prometheus lacks {sorted(want - got)} for {selector}") from None


def _check_labels(series: dict[str, JSON], kinds: dict[str, str], values: dict[str, str]) -> None:
    """Each series has exactly the labels of its kind (§7.3; empty values are absent in
    Prometheus), with these values."""
    for name, kind in kinds.items():
        labels = {k: v for k, v in series[name].items() if k not in SCRAPE_LABELS}
        expected = {k for k in LABELS[kind] if values.get(k, "x") != ""}
        assert set(labels) == expected, (name, labels)
        wrong = {k: v for k, v in labels.items() if k in values and values[k] != v}
        assert not wrong, (name, wrong)


async def test_backup_and_restore_metrics_reach_prometheus_through_the_pushgateway(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    moto: MotoServer,
    monitoring: Monitoring,
    tmp_path: Path,
) -> None:
    op = await run_operator(pushgateway_url=monitoring.pushgateway_url)
    await monitoring.scrape_operators(int(op.metrics_port or 0))
    bucket = f"metrics-{namespace}"[:63]
    moto.create_bucket(bucket)
    backend = {"s3": {"endpoint": moto.endpoint, "bucket": bucket, "prefix": "web"}}
    keys = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    backup = await back_up(rawkube, namespace, runner, restic_bin, tmp_path, backend, keys)
    session = backup.session
    assert session["status"]["phase"] == "Succeeded", (session["status"], backup.sidecar.logs())
    pushed = condition(session, "MetricsPushed")
    assert (pushed["status"], pushed["reason"]) == ("True", "SuccessfullyPushedMetrics")
    assert monitoring.pushgateway_url in pushed["message"]
    repo = condition(session, "RepositoryMetricsPushed")
    assert (repo["status"], repo["reason"]) == ("True", "SuccessfullyPushedRepositoryMetrics")

    kinds = names_of(*BACKUP_KINDS)
    series = await _series(
        monitoring, f'{{namespace="{namespace}",job!="stash-operator"}}', set(kinds)
    )
    _check_labels(
        series,
        kinds,
        {
            "invoker_kind": "BackupConfiguration",
            "invoker_name": "bc",
            "namespace": namespace,
            "driver": "Restic",
            "kind": "Deployment",
            "group": "apps",
            "hostname": "host-0",
            "backend": "s3",
            "bucket": bucket,
            "prefix": "web",
        },
    )
    assert {s["job"] for s in series.values()} == {f"backupconfiguration-{namespace}-bc"}
    assert series["stash_backup_session_success"]["repository"] == "repo"
    assert series["stash_repository_integrity"]["name"] == "repo"
    (success,) = await monitoring.query(
        f'stash_appscode_com_backupsession_host_backup_success{{namespace="{namespace}"}}'
    )
    assert success["value"][1] == "1"
    (count,) = await monitoring.query(f'stash_repository_snapshot_count{{namespace="{namespace}"}}')
    assert count["value"][1] == "1"

    restored = await restore(rawkube, namespace, runner, backup, restic_bin, tmp_path)
    assert restored["status"]["phase"] == "Succeeded", restored["status"]
    pushed = condition(restored, "MetricsPushed")
    assert (pushed["status"], pushed["reason"]) == ("True", "SuccessfullyPushedMetrics")
    kinds = names_of(*RESTORE_KINDS)
    selector = f'{{namespace="{namespace}",invoker_kind="RestoreSession"}}'
    series = await _series(monitoring, selector, set(kinds))
    _check_labels(
        series,
        kinds,
        {"invoker_name": "restore", "kind": "Deployment", "name": "web", "hostname": "host-0"},
    )
    assert {s["job"] for s in series.values()} == {f"restoresession-{namespace}-restore"}


async def test_without_a_pushgateway_the_operator_exports_the_same_families(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    monitoring: Monitoring,
    tmp_path: Path,
) -> None:
    op = await run_operator()
    await monitoring.scrape_operators(int(op.metrics_port or 0))
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    backend = {"local": {"hostPath": {"path": str(repo_dir)}, "mountPath": "/safe/repo"}}
    backup = await back_up(rawkube, namespace, runner, restic_bin, tmp_path, backend)
    session = backup.session
    assert session["status"]["phase"] == "Succeeded", (session["status"], backup.sidecar.logs())
    pushed = condition(session, "MetricsPushed")
    assert (pushed["status"], pushed["reason"]) == ("True", "MetricsExportedByOperator")
    assert "no Pushgateway configured" in pushed["message"]
    repo = condition(session, "RepositoryMetricsPushed")
    assert (repo["status"], repo["reason"]) == ("True", "RepositoryMetricsExportedByOperator")

    kinds = names_of(*BACKUP_KINDS)
    selector = f'{{namespace="{namespace}",job="stash-operator",invoker_name="bc"}}'
    series = await _series(monitoring, selector, set(kinds))
    _check_labels(
        series,
        kinds,
        {
            "invoker_kind": "BackupConfiguration",
            "namespace": namespace,
            "repository": "repo",
            "kind": "Deployment",
            "hostname": "host-0",
            "backend": "local",
            "bucket": "",
            "prefix": "",
        },
    )
    assert {s["instance"] for s in series.values()} == {f"127.0.0.1:{op.metrics_port}"}
    assert series["stash_backup_host_files_total"]["name"] == "web"
    assert series["stash_appscode_com_repository_snapshot_count"]["name"] == "repo"
    (size,) = await monitoring.query(f'stash_repository_size_bytes{{namespace="{namespace}"}}')
    assert float(size["value"][1]) > 30_000

    restored = await restore(rawkube, namespace, runner, backup, restic_bin, tmp_path)
    assert restored["status"]["phase"] == "Succeeded", restored["status"]
    assert condition(restored, "MetricsPushed")["reason"] == "MetricsExportedByOperator"
    kinds = names_of(*RESTORE_KINDS)
    selector = f'{{namespace="{namespace}",job="stash-operator",invoker_kind="RestoreSession"}}'
    series = await _series(monitoring, selector, set(kinds))
    _check_labels(series, kinds, {"invoker_name": "restore", "hostname": "host-0"})

    # A deleted invoker's metrics leave the operator's /metrics.
    await rawkube.delete(RESTORESESSIONS, "restore", namespace)
    mine = f'namespace="{namespace}",'

    async def forgotten() -> bool:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{op.metrics_port}/metrics") as resp,
        ):
            text = await resp.text()
        lines = [ln for ln in text.splitlines() if mine in ln]
        return not any('invoker_name="restore"' in ln for ln in lines) and any(
            'invoker_name="bc"' in ln for ln in lines
        )

    await eventually(forgotten, timeout=30, what="the RestoreSession's metrics gone")


async def test_an_unreachable_pushgateway_is_recorded_and_fails_no_backup(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    await run_operator(pushgateway_url=nowhere)
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    backend = {"local": {"hostPath": {"path": str(repo_dir)}, "mountPath": "/safe/repo"}}
    backup = await back_up(rawkube, namespace, runner, restic_bin, tmp_path, backend)
    session = backup.session
    assert session["status"]["phase"] == "Succeeded", (session["status"], backup.sidecar.logs())
    for kind, reason in (
        ("MetricsPushed", "FailedToPushMetrics"),
        ("RepositoryMetricsPushed", "FailedToPushRepositoryMetrics"),
    ):
        cond = condition(session, kind)
        assert (cond["status"], cond["reason"]) == ("False", reason), cond
        assert f"the Pushgateway at {nowhere} could not be reached" in cond["message"], cond
    assert "host metrics: the Pushgateway at" in backup.sidecar.logs()


async def test_a_pushgateway_that_does_not_answer_is_given_up_after_the_timeout(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await run_operator(pushgateway_url=f"http://127.0.0.1:{port}", pushgateway_timeout=1)
        await create_world(rawkube, namespace)
        await ready_invoker(rawkube, namespace)
        name = await trigger(rawkube, namespace)
        await _report_host(rawkube, namespace, name)
        done = await finished(rawkube, namespace, name)
    finally:
        server.close()
        for writer in accepted:
            writer.close()
    assert done["status"]["phase"] == "Succeeded", done["status"]
    cond = condition(done, "MetricsPushed")
    assert (cond["status"], cond["reason"]) == ("False", "FailedToPushMetrics"), cond
    assert f"the Pushgateway at http://127.0.0.1:{port} did not answer in 1s" in cond["message"]
    assert accepted, "the operator did try to push"


async def _report_host(kube: Kube, ns: str, name: str) -> None:
    """What an agent does when its host is done: upsert the host's stats entry."""

    async def initiated() -> JSON | None:
        obj = await kube.get(BACKUPSESSIONS, name, ns)
        return obj if (obj.get("status") or {}).get("targets") else None

    await eventually(initiated, timeout=20, what=f"{name} targets initiated")

    def add(live: JSON) -> JSON:
        status = dict(live["status"])
        target = dict(status["targets"][0])
        target["stats"] = [{"hostname": "host-0", "phase": "Succeeded", "duration": "1s"}]
        status["targets"] = [target]
        return status

    await update_status(kube, BACKUPSESSIONS, name, ns, add)
