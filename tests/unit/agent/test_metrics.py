"""Agent metrics: both names of every family, §7.3 labels, and what a push reports."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.exposition import generate_latest

from stash.agent.metrics import (
    MetricLabels,
    RepositoryFacts,
    host_backup_registry,
    push,
    repository_registry,
)
from stash.api.backupsession import FileStats, HostBackupStats, SnapshotStats

LABELS = MetricLabels("BackupConfiguration", "bc", "demo", "repo", "Deployment", "apps", "web")
HOST = HostBackupStats(
    hostname="host-0",
    phase="Succeeded",
    duration="1m3s",
    snapshots=[
        SnapshotStats(
            name="abc",
            path="/data",
            total_size="1.000 KiB",
            uploaded="512 B",
            processing_time="0m2s",
            file_stats=FileStats(total_files=3, new_files=1, modified_files=0, unmodified_files=2),
        )
    ],
)


def test_host_families_have_legacy_and_new_names_and_values() -> None:
    text = generate_latest(host_backup_registry(LABELS, HOST)).decode()
    for prefix in ("stash_backup", "stash_appscode_com_backupsession"):
        assert f"{prefix}_host_backup_success{{" in text
        assert f"{prefix}_host_data_size_bytes{{" in text
    assert (
        'hostname="host-0"' in text and 'invoker_name="bc"' in text and 'kind="Deployment"' in text
    )
    assert "stash_backup_host_backup_duration_seconds{" in text
    assert "} 63.0" in text  # 1m3s
    assert "} 1024.0" in text  # 1.000 KiB


def test_a_failed_host_pushes_only_its_success_gauge() -> None:
    failed = HostBackupStats(hostname="host-0", phase="Failed", error="boom")
    text = generate_latest(host_backup_registry(LABELS, failed)).decode()
    names = {line.split("{")[0] for line in text.splitlines() if not line.startswith("#")}
    assert names == {
        "stash_backup_host_backup_success",
        "stash_appscode_com_backupsession_host_backup_success",
    }


def test_repository_family_is_labelled_with_the_repository() -> None:
    facts = RepositoryFacts("repo", "backups", "s3", "bucket", "demo", True, 2048, 4, 1)
    text = generate_latest(repository_registry(LABELS, facts)).decode()
    assert "stash_repository_snapshot_count{" in text
    assert "stash_appscode_com_repository_integrity{" in text
    assert 'namespace="backups"' in text and 'backend="s3"' in text


async def test_push_posts_under_the_job_grouping_key() -> None:
    seen: list[tuple[str, str, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with TestServer(app) as server:
        result = await push(
            str(server.make_url("")), LABELS.job, host_backup_registry(LABELS, HOST)
        )
    assert result.ok
    method, path, body = seen[0]
    assert (method, path) == ("POST", "/metrics/job/backupconfiguration-demo-bc")
    assert b"stash_backup_host_backup_success" in body


async def test_push_outcomes_without_or_with_a_failing_pushgateway() -> None:
    registry = host_backup_registry(LABELS, HOST)
    assert (await push(None, "job", registry)).ok
    unreachable = await push("http://127.0.0.1:9", "job", registry)
    assert unreachable.ok and "no Pushgateway reachable" in unreachable.message

    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=500, text="disk full")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    async with TestServer(app) as server:
        result = await push(str(server.make_url("")), "job", registry)
    assert not result.ok and "HTTP 500" in result.message
