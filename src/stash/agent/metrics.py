"""Metrics the agent pushes to a Prometheus Pushgateway (stash-api.md §7).

What it is for: building the host backup, host restore and repository metric families
(each under its legacy and its new name, all gauges, labelled as §7.3 says) into a
registry, and `push()`, which POSTs them (Pushgateway "add" semantics) under the
grouping key `job=<lower(invokerKind)>-<namespace>-<invokerName>`.

A push to a Pushgateway that cannot be reached (none configured, DNS fails, connection
refused) counts as done with a message saying so: the operator's default URL points
at a Service that only exists when a Pushgateway is deployed (§14.3). A Pushgateway
that answers with an error is a failure.

Not for: the operator's own /metrics (`stash.metrics`) or session metrics (pushed by
the operator).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from stash.api.backupsession import HostBackupStats
from stash.restic import parse_bytes

__all__ = [
    "MetricLabels",
    "PushResult",
    "RepositoryFacts",
    "host_backup_registry",
    "host_restore_registry",
    "push",
    "repository_registry",
]

log = logging.getLogger(__name__)

_BACKUP_HOST = ("stash_backup", "stash_appscode_com_backupsession")
_RESTORE_HOST = ("stash_restore", "stash_appscode_com_restoresession")
_REPOSITORY = ("stash_repository", "stash_appscode_com_repository")


@dataclass(frozen=True)
class MetricLabels:
    """The labels of §7.3 for one invoker and target."""

    invoker_kind: str
    invoker_name: str
    namespace: str
    repository: str
    target_kind: str = ""
    target_group: str = ""
    target_name: str = ""
    driver: str = "Restic"
    extra: Mapping[str, str] | None = None

    def invoker(self) -> dict[str, str]:
        """Labels every family carries."""
        out = {
            "invoker_kind": self.invoker_kind,
            "invoker_name": self.invoker_name,
            "namespace": self.namespace,
            "driver": self.driver,
            "repository": self.repository,
        }
        out.update(self.extra or {})
        return out

    def host(self, hostname: str) -> dict[str, str]:
        """Labels of the host families."""
        return {
            **self.invoker(),
            "kind": self.target_kind,
            "group": self.target_group,
            "name": self.target_name,
            "hostname": hostname,
        }

    @property
    def job(self) -> str:
        """The Pushgateway grouping key `job` (§7.1)."""
        return f"{self.invoker_kind.lower()}-{self.namespace}-{self.invoker_name}"


def _gauges(
    registry: CollectorRegistry,
    prefixes: tuple[str, str],
    values: Sequence[tuple[str, float, str]],
    labels: Mapping[str, str],
) -> None:
    """Each (suffix, value, help) under both prefixes."""
    for suffix, value, text in values:
        for prefix in prefixes:
            gauge = Gauge(f"{prefix}_{suffix}", text, labelnames=list(labels), registry=registry)
            gauge.labels(**labels).set(value)


def _seconds(text: str | None) -> float:
    """`1m3s`, `12.3s`, `1h0m5s` -> seconds (0 when unreadable)."""
    if not text:
        return 0.0
    total, number = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
            continue
        factor = {"h": 3600.0, "m": 60.0, "s": 1.0}.get(ch)
        if factor is None or not number:
            return 0.0
        total += float(number) * factor
        number = ""
    return total


def _bytes(text: str | None) -> float:
    try:
        return float(parse_bytes(text or "0 B"))
    except ValueError:
        return 0.0


def host_backup_registry(labels: MetricLabels, host: HostBackupStats) -> CollectorRegistry:
    """Host backup metrics (§7.2); only `…_success` (0) when the host failed."""
    registry = CollectorRegistry()
    ok = host.phase == "Succeeded"
    values: list[tuple[str, float, str]] = [
        ("host_backup_success", 1.0 if ok else 0.0, "Whether the host's backup succeeded")
    ]
    if ok:
        snaps = host.snapshots or []
        files = [s.file_stats for s in snaps if s.file_stats is not None]
        values += [
            ("host_backup_duration_seconds", _seconds(host.duration), "Host backup duration"),
            ("host_data_size_bytes", sum(_bytes(s.total_size) for s in snaps), "Data size"),
            ("host_data_uploaded_bytes", sum(_bytes(s.uploaded) for s in snaps), "Uploaded"),
            (
                "host_data_processing_time_seconds",
                sum(_seconds(s.processing_time) for s in snaps),
                "Time restic spent processing the data",
            ),
            ("host_files_total", sum(f.total_files or 0 for f in files), "Files"),
            ("host_files_new", sum(f.new_files or 0 for f in files), "New files"),
            ("host_files_modified", sum(f.modified_files or 0 for f in files), "Modified"),
            ("host_files_unmodified", sum(f.unmodified_files or 0 for f in files), "Unmodified"),
        ]
    _gauges(registry, _BACKUP_HOST, values, labels.host(host.hostname or ""))
    return registry


def host_restore_registry(
    labels: MetricLabels, hostname: str, ok: bool, seconds: float
) -> CollectorRegistry:
    """Host restore metrics (§7.2)."""
    registry = CollectorRegistry()
    values: list[tuple[str, float, str]] = [
        ("host_restore_success", 1.0 if ok else 0.0, "Whether the host's restore succeeded")
    ]
    if ok:
        values.append(("host_restore_duration_seconds", seconds, "Host restore duration"))
    _gauges(registry, _RESTORE_HOST, values, labels.host(hostname))
    return registry


@dataclass(frozen=True)
class RepositoryFacts:
    """What the post-backup actions learned about the repository."""

    name: str
    namespace: str
    backend: str
    bucket: str
    prefix: str
    integrity: bool
    size_bytes: int
    snapshot_count: int
    snapshots_removed: int


def repository_registry(labels: MetricLabels, facts: RepositoryFacts) -> CollectorRegistry:
    """Repository metrics (§7.2), labelled with the Repository's name and namespace."""
    registry = CollectorRegistry()
    label_values = {
        **labels.invoker(),
        "name": facts.name,
        "namespace": facts.namespace,
        "backend": facts.backend,
        "bucket": facts.bucket,
        "prefix": facts.prefix,
    }
    values: list[tuple[str, float, str]] = [
        ("integrity", 1.0 if facts.integrity else 0.0, "Whether restic check found no errors"),
        ("size_bytes", float(facts.size_bytes), "Stored size of the repository"),
        ("snapshot_count", float(facts.snapshot_count), "Snapshots in the repository"),
        ("snapshot_cleaned", float(facts.snapshots_removed), "Snapshots removed by retention"),
    ]
    _gauges(registry, _REPOSITORY, values, label_values)
    return registry


@dataclass(frozen=True)
class PushResult:
    """Whether the metrics are where they should be, and what happened."""

    ok: bool
    message: str


async def push(url: str | None, job: str, registry: CollectorRegistry) -> PushResult:
    """POST `registry` to the Pushgateway at `url` under `job` (module docstring)."""
    if not url:
        return PushResult(True, "no Pushgateway configured; metrics not pushed")
    target = f"{url.rstrip('/')}/metrics/job/{quote(job, safe='')}"
    body = generate_latest(registry)
    timeout = aiohttp.ClientTimeout(total=10, sock_connect=5)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            # The format `generate_latest` writes, as prometheus_client's own push sends it.
            session.post(
                target, data=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
            ) as resp,
        ):
            text = (await resp.text())[:300]
            if 200 <= resp.status < 300:
                return PushResult(True, f"metrics pushed to the Pushgateway at {url}")
            return PushResult(
                False, f"the Pushgateway at {url} refused the metrics: HTTP {resp.status} {text}"
            )
    except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
        log.debug("no Pushgateway reachable at %s: %s", url, exc)
        return PushResult(
            True,
            f"no Pushgateway reachable at {url} ({exc.__class__.__name__}); metrics not pushed",
        )
