"""Session metrics (stash-api.md §7): both names of every family, the §7.3 labels, what
a push reports for every way a Pushgateway can fail, and the operator's local copy."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stash import metrics as operator_metrics
from stash.api.backupsession import FileStats, HostBackupStats, SnapshotStats
from stash.api.repository import Backend
from stash.sessionmetrics import (
    FAMILIES,
    LocalGateway,
    MetricLabels,
    RepositoryFacts,
    SessionOutcome,
    TargetOutcome,
    backend_location,
    backup_session_registry,
    grouping_path,
    host_backup_registry,
    host_restore_registry,
    push,
    repository_registry,
    restore_session_registry,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
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


def samples(registry_text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name -> [(labels, value)] of an exposition."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(registry_text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def test_host_families_have_legacy_and_new_names_and_values() -> None:
    got = samples(generate_latest(host_backup_registry(LABELS, HOST)).decode())
    assert {n for n in got} == {n for f in FAMILIES["host"] for n in f.names}
    ((labels, duration),) = got["stash_backup_host_backup_duration_seconds"]
    assert labels == {
        "invoker_kind": "BackupConfiguration",
        "invoker_name": "bc",
        "namespace": "demo",
        "driver": "Restic",
        "repository": "repo",
        "kind": "Deployment",
        "group": "apps",
        "name": "web",
        "hostname": "host-0",
    }
    assert duration == 63.0
    assert got["stash_appscode_com_backupsession_host_data_size_bytes"][0][1] == 1024.0
    assert got["stash_backup_host_files_unmodified"][0][1] == 2.0


def test_a_failed_host_sets_only_its_success_gauge() -> None:
    failed = HostBackupStats(hostname="host-0", phase="Failed", error="boom")
    got = samples(generate_latest(host_backup_registry(LABELS, failed)).decode())
    assert set(got) == {
        "stash_backup_host_backup_success",
        "stash_appscode_com_backupsession_host_backup_success",
    }
    assert got["stash_backup_host_backup_success"][0][1] == 0.0


def test_repository_family_is_labelled_with_the_repository() -> None:
    facts = RepositoryFacts("repo", "backups", "s3", "bucket", "demo", True, 2048, 4, 1)
    got = samples(generate_latest(repository_registry(LABELS, facts)).decode())
    assert set(got) == {n for f in FAMILIES["repository"] for n in f.names}
    labels, value = got["stash_repository_snapshot_count"][0]
    assert value == 4.0
    assert (labels["name"], labels["namespace"], labels["backend"]) == ("repo", "backups", "s3")
    assert (labels["bucket"], labels["prefix"], labels["invoker_name"]) == ("bucket", "demo", "bc")


def test_backend_location_names_provider_bucket_and_prefix() -> None:
    s3 = Backend.model_validate({"s3": {"endpoint": "e", "bucket": "b", "prefix": "p"}})
    assert backend_location(s3) == ("s3", "b", "p")
    azure = Backend.model_validate({"azure": {"container": "c"}})
    assert backend_location(azure) == ("azure", "c", "")
    local = Backend.model_validate({"local": {"mountPath": "/r", "hostPath": {"path": "/x"}}})
    assert backend_location(local) == ("local", "", "")


def _outcome(ok: bool) -> SessionOutcome:
    targets = (
        TargetOutcome("Deployment", "apps", "web", True, 1),
        TargetOutcome("StatefulSet", "apps", "db", ok, 3),
    )
    return SessionOutcome(succeeded=ok, seconds=12.5, finished_at=1_700_000_000.0, targets=targets)


def test_session_and_target_families_of_a_successful_session() -> None:
    got = samples(generate_latest(backup_session_registry(LABELS, _outcome(True))).decode())
    names = {n for kind in ("session", "target") for f in FAMILIES[kind] for n in f.names}
    assert set(got) == names
    ((labels, value),) = got["stash_appscode_com_backupsession_target_count_total"]
    assert value == 2.0 and "kind" not in labels and labels["repository"] == "repo"
    hosts = {lb["name"]: v for lb, v in got["stash_backup_target_host_count_total"]}
    assert hosts == {"web": 1.0, "db": 3.0}
    assert got["stash_backup_last_success_time_seconds"][0][1] == 1_700_000_000.0


def test_a_failed_session_sets_only_success_gauges_and_its_good_targets() -> None:
    got = samples(generate_latest(backup_session_registry(LABELS, _outcome(False))).decode())
    assert got["stash_backup_session_success"][0][1] == 0.0
    assert "stash_backup_session_duration_seconds" not in got
    assert "stash_backup_last_success_time_seconds" not in got
    success = {lb["name"]: v for lb, v in got["stash_backup_target_success"]}
    assert success == {"web": 1.0, "db": 0.0}
    assert [lb["name"] for lb, _ in got["stash_backup_target_host_count_total"]] == ["web"]


def test_restore_families() -> None:
    labels = MetricLabels("RestoreSession", "restore", "demo", "repo", "Deployment", "apps", "web")
    outcome = SessionOutcome(True, 3.0, 1.0, (TargetOutcome("Deployment", "apps", "web", True, 1),))
    got = samples(generate_latest(restore_session_registry(labels, outcome)).decode())
    got |= samples(generate_latest(host_restore_registry(labels, "host-0", True, 2.5)).decode())
    kinds = ("restore session", "restore target", "restore host")
    assert set(got) == {n for kind in kinds for f in FAMILIES[kind] for n in f.names}
    assert got["stash_restore_host_restore_duration_seconds"][0][1] == 2.5
    assert (
        got["stash_appscode_com_restoresession_success"][0][0]["invoker_kind"] == "RestoreSession"
    )


def test_volume_snapshotter_sessions_carry_no_repository_label() -> None:
    labels = MetricLabels("BackupConfiguration", "bc", "demo", "", driver="VolumeSnapshotter")
    got = samples(generate_latest(backup_session_registry(labels, _outcome(True))).decode())
    ((lb, _),) = got["stash_backup_session_success"]
    assert lb["driver"] == "VolumeSnapshotter" and "repository" not in lb


def test_grouping_keys() -> None:
    assert LABELS.grouping() == {"job": "backupconfiguration-demo-bc"}
    assert grouping_path(LABELS.grouping("host-0")) == (
        "/metrics/job/backupconfiguration-demo-bc/hostname/host-0"
    )
    assert grouping_path({"job": "j", "hostname": ""}) == "/metrics/job/j/hostname@base64/="
    assert grouping_path({"job": "a/b"}) == "/metrics/job@base64/YS9i"


async def _serve(handler: web.RequestHandler) -> TestServer:  # type: ignore[type-arg]
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_push_posts_under_the_grouping_key() -> None:
    seen: list[tuple[str, str, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, await request.read()))
        return web.Response(status=200)

    server = await _serve(handler)
    try:
        result = await push(
            str(server.make_url("")), LABELS.grouping("host-0"), host_backup_registry(LABELS, HOST)
        )
    finally:
        await server.close()
    assert result.ok and result.state == "pushed"
    method, path, body = seen[0]
    assert (method, path) == ("POST", "/metrics/job/backupconfiguration-demo-bc/hostname/host-0")
    assert b"stash_backup_host_backup_success" in body


async def test_a_push_that_does_not_arrive_is_a_failure_with_the_reason() -> None:
    registry = host_backup_registry(LABELS, HOST)
    unreachable = await push("http://127.0.0.1:9", {"job": "j"}, registry)
    assert unreachable.state == "failed" and "could not be reached" in unreachable.message

    async def refuse(_: web.Request) -> web.Response:
        return web.Response(status=400, text="pushed metrics are invalid or inconsistent")

    async def hang(_: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(status=200)

    for handler, expected in ((refuse, "HTTP 400 pushed metrics are invalid"), (hang, "0.2s")):
        server = await _serve(handler)
        try:
            result = await push(str(server.make_url("")), {"job": "j"}, registry, timeout=0.2)
        finally:
            await server.close()
        assert not result.ok and expected in result.message, result


async def test_a_pushgateway_password_never_appears_in_the_outcome() -> None:
    result = await push(
        "http://user:s3cret@127.0.0.1:9", {"job": "j"}, host_backup_registry(LABELS, HOST)
    )
    assert not result.ok and "s3cret" not in result.message
    assert "http://127.0.0.1:9" in result.message


def test_local_gateway_replaces_by_name_within_a_group_and_merges_groups() -> None:
    local = LocalGateway()
    other = MetricLabels("BackupConfiguration", "other", "demo", "repo", "Deployment", "apps", "db")
    local.add(LABELS.grouping("host-0"), host_backup_registry(LABELS, HOST))
    local.add(other.grouping("host-0"), host_backup_registry(other, HOST))
    failed = HostBackupStats(hostname="host-0", phase="Failed")
    local.add(LABELS.grouping("host-0"), host_backup_registry(LABELS, failed))
    registry = CollectorRegistry()
    registry.register(local)
    text = generate_latest(registry).decode()
    assert text.count("# TYPE stash_backup_host_backup_success gauge") == 1
    got = samples(text)
    success = {lb["invoker_name"]: v for lb, v in got["stash_backup_host_backup_success"]}
    assert success == {"bc": 0.0, "other": 1.0}
    # "add" keeps what the failed push did not carry, as the Pushgateway does.
    durations = {lb["invoker_name"] for lb, _ in got["stash_backup_host_backup_duration_seconds"]}
    assert durations == {"bc", "other"}
    assert all("job" not in lb for lb, _ in got["stash_backup_host_backup_success"])


def test_local_gateway_forgets_every_group_of_a_job() -> None:
    local = LocalGateway()
    other = MetricLabels("BackupConfiguration", "other", "demo", "repo", "Deployment", "apps", "db")
    local.add(LABELS.grouping(), backup_session_registry(LABELS, _outcome(True)))
    local.add(LABELS.grouping("host-0"), host_backup_registry(LABELS, HOST))
    local.add(other.grouping("host-0"), host_backup_registry(other, HOST))
    local.forget(LABELS.job)
    names = {
        lb["invoker_name"]
        for family in local.collect()
        for lb in (s.labels for s in family.samples)
    }
    assert names == {"other"}


def test_docs_list_every_family() -> None:
    text = DOCS.read_text()
    missing = [n for fams in FAMILIES.values() for f in fams for n in f.names if n not in text]
    for value in vars(operator_metrics).values():
        name = getattr(value, "_name", None)
        if isinstance(name, str) and name.startswith("stash_operator") and name not in text:
            missing.append(name)
    assert not missing, f"docs/metrics.md does not list {missing}"
