"""Every metric the chart's alert rules and Grafana dashboard name is in a live scrape:
the operator's /metrics or the Pushgateway's, after a scheduled backup and a restore
run by the real agent; and Prometheus, scraping both, holds each of them. The only
names allowed to be missing are the kube-apiserver's own admission metrics
(`APISERVER_METRICS`, docs/metrics.md)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stash.contract.resources import BACKUPCONFIGURATIONS
from stash.kube.client import Kube
from stash_dev.podrunner import PodRunner
from tests.integration.metrics.world import back_up, restore
from tests.integration.operator.conftest import OperatorFactory
from tests.support.chart_metrics import APISERVER_METRICS, used_metric_names
from tests.support.cluster import eventually
from tests.support.prometheus import Monitoring

pytestmark = pytest.mark.cluster


async def _scraped(url: str) -> set[str]:
    """The sample names of one scrape of `url`."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        text = await resp.text()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


async def test_every_metric_the_chart_uses_is_exported_live(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    monitoring: Monitoring,
    tmp_path: Path,
) -> None:
    op = await run_operator(pushgateway_url=monitoring.pushgateway_url)
    await monitoring.scrape_operators(int(op.metrics_port or 0))
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    backend = {"local": {"hostPath": {"path": str(repo_dir)}, "mountPath": "/safe/repo"}}
    # A schedule, so the cron engine's families have samples too.
    backup = await back_up(
        rawkube, namespace, runner, restic_bin, tmp_path, backend, schedule="* * * * *"
    )
    await rawkube.patch(BACKUPCONFIGURATIONS, "bc", {"spec": {"paused": True}}, namespace)
    assert backup.session["status"]["phase"] == "Succeeded", backup.session["status"]
    restored = await restore(rawkube, namespace, runner, backup, restic_bin, tmp_path)
    assert restored["status"]["phase"] == "Succeeded", restored["status"]

    used = used_metric_names()
    assert set(used) >= APISERVER_METRICS, "the allow-list names something the chart dropped"
    wanted = {n: where for n, where in used.items() if n not in APISERVER_METRICS}
    scraped = await _scraped(f"http://127.0.0.1:{op.metrics_port}/metrics")
    scraped |= await _scraped(f"{monitoring.pushgateway_url}/metrics")
    missing = {n: sorted(w) for n, w in wanted.items() if n not in scraped}
    assert not missing, f"used by the chart but in no live scrape: {missing}"

    async def in_prometheus() -> set[str] | None:
        rows = await monitoring.query('group by (__name__) ({__name__=~"stash_.+"})')
        held = {r["metric"]["__name__"] for r in rows}
        return held if set(wanted) <= held else None

    try:
        await eventually(in_prometheus, timeout=30, interval=0.5, what="every name in Prometheus")
    except AssertionError:
        rows = await monitoring.query('group by (__name__) ({__name__=~"stash_.+"})')
        held = {r["metric"]["__name__"] for r in rows}
        raise AssertionError(f"Prometheus lacks {sorted(set(wanted) - held)}") from None
