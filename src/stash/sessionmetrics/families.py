"""The metric families of backup and restore sessions (stash-api.md §7.2, §7.3).

What it is for: the table of families (`FAMILIES`: each with its legacy and its new
name, all gauges), the labels of §7.3 (`MetricLabels`) with the grouping key a push
goes under, and builders that turn what a status says into a registry holding every
family it implies under both names: session and target families (the operator, when
a session ends), host families (the agent after each host, or the operator when it
exports them itself), repository families (the host that ran the post-backup actions,
or the operator). On failure only a family's `…success` gauge (0) is set; durations,
counts, times and sizes only on success (§7.2).

Not for: sending them anywhere (`stash.sessionmetrics.publish`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from stash.api.backupsession import HostBackupStats
from stash.api.repository import Backend
from stash.contract.resources import TARGET_KINDS
from stash.restic import parse_bytes

__all__ = [
    "FAMILIES",
    "Family",
    "MetricLabels",
    "RepositoryFacts",
    "SessionOutcome",
    "TargetOutcome",
    "backend_location",
    "backup_session_registry",
    "duration_seconds",
    "host_backup_registry",
    "host_restore_registry",
    "repository_registry",
    "restore_session_registry",
    "target_group",
]


@dataclass(frozen=True)
class Family:
    """One metric family: its legacy name, its new name and what it measures."""

    legacy: str
    new: str
    help: str

    @property
    def names(self) -> tuple[str, str]:
        """Both names: every family is set under each (§7.2)."""
        return (self.legacy, self.new)


def _pair(legacy: str, new: str, text: str) -> Family:
    return Family(legacy, new, text)


def _prefixed(prefixes: tuple[str, str], suffix: str, text: str) -> Family:
    return Family(f"{prefixes[0]}_{suffix}", f"{prefixes[1]}_{suffix}", text)


_BS = "stash_appscode_com_backupsession"
_RS = "stash_appscode_com_restoresession"
_HOST = ("stash_backup", _BS)
_RESTORE_HOST = ("stash_restore", _RS)
_REPO = ("stash_repository", "stash_appscode_com_repository")

SESSION_SUCCESS = _pair(
    "stash_backup_session_success", f"{_BS}_success", "1 if the session succeeded"
)
SESSION_DURATION = _pair(
    "stash_backup_session_duration_seconds", f"{_BS}_duration_seconds", "Session duration"
)
SESSION_TARGETS = _pair(
    "stash_backup_target_count_total", f"{_BS}_target_count_total", "Targets in the session"
)
SESSION_LAST_SUCCESS = _pair(
    "stash_backup_last_success_time_seconds",
    f"{_BS}_last_success_time_seconds",
    "When the invoker's last session succeeded (Unix time)",
)
TARGET_SUCCESS = _pair(
    "stash_backup_target_success", f"{_BS}_target_success", "1 if the target succeeded"
)
TARGET_HOSTS = _pair(
    "stash_backup_target_host_count_total", f"{_BS}_target_host_count_total", "Hosts of the target"
)
TARGET_LAST_SUCCESS = _pair(
    "stash_backup_target_last_success_time_seconds",
    f"{_BS}_target_last_success_time_seconds",
    "When the target's last backup succeeded (Unix time)",
)
HOST_SUCCESS = _prefixed(_HOST, "host_backup_success", "1 if the host's backup succeeded")
HOST_DURATION = _prefixed(_HOST, "host_backup_duration_seconds", "Host backup duration")
HOST_SIZE = _prefixed(_HOST, "host_data_size_bytes", "Size of the data backed up")
HOST_UPLOADED = _prefixed(_HOST, "host_data_uploaded_bytes", "Data uploaded to the repository")
HOST_PROCESSING = _prefixed(
    _HOST, "host_data_processing_time_seconds", "Time restic spent processing the data"
)
HOST_FILES = _prefixed(_HOST, "host_files_total", "Files backed up")
HOST_FILES_NEW = _prefixed(_HOST, "host_files_new", "New files")
HOST_FILES_MODIFIED = _prefixed(_HOST, "host_files_modified", "Modified files")
HOST_FILES_UNMODIFIED = _prefixed(_HOST, "host_files_unmodified", "Unmodified files")
REPO_INTEGRITY = _prefixed(_REPO, "integrity", "1 if restic check found no errors")
REPO_SIZE = _prefixed(_REPO, "size_bytes", "Stored size of the repository")
REPO_SNAPSHOTS = _prefixed(_REPO, "snapshot_count", "Snapshots in the repository")
REPO_CLEANED = _prefixed(_REPO, "snapshot_cleaned", "Snapshots removed by the last retention")
RESTORE_SUCCESS = _pair(
    "stash_restore_session_success", f"{_RS}_success", "1 if the restore succeeded"
)
RESTORE_DURATION = _pair(
    "stash_restore_session_duration_seconds", f"{_RS}_duration_seconds", "Restore duration"
)
RESTORE_TARGETS = _pair(
    "stash_restore_target_count_total", f"{_RS}_target_count_total", "Targets restored"
)
RESTORE_TARGET_SUCCESS = _pair(
    "stash_restore_target_success", f"{_RS}_target_success", "1 if the target was restored"
)
RESTORE_TARGET_HOSTS = _pair(
    "stash_restore_target_host_count_total", f"{_RS}_target_host_count_total", "Hosts restored"
)
RESTORE_HOST_SUCCESS = _prefixed(
    _RESTORE_HOST, "host_restore_success", "1 if the host's restore succeeded"
)
RESTORE_HOST_DURATION = _prefixed(_RESTORE_HOST, "host_restore_duration_seconds", "Host restore")

FAMILIES: dict[str, tuple[Family, ...]] = {
    "session": (SESSION_SUCCESS, SESSION_DURATION, SESSION_TARGETS, SESSION_LAST_SUCCESS),
    "target": (TARGET_SUCCESS, TARGET_HOSTS, TARGET_LAST_SUCCESS),
    "host": (
        HOST_SUCCESS,
        HOST_DURATION,
        HOST_SIZE,
        HOST_UPLOADED,
        HOST_PROCESSING,
        HOST_FILES,
        HOST_FILES_NEW,
        HOST_FILES_MODIFIED,
        HOST_FILES_UNMODIFIED,
    ),
    "repository": (REPO_INTEGRITY, REPO_SIZE, REPO_SNAPSHOTS, REPO_CLEANED),
    "restore session": (RESTORE_SUCCESS, RESTORE_DURATION, RESTORE_TARGETS),
    "restore target": (RESTORE_TARGET_SUCCESS, RESTORE_TARGET_HOSTS),
    "restore host": (RESTORE_HOST_SUCCESS, RESTORE_HOST_DURATION),
}
"""Every family of §7.2 by what it describes (docs/metrics.md lists the same)."""


def target_group(kind: str, api_version: str | None = None) -> str:
    """The API group of a target (`apps` for a Deployment, "" for a PVC): from its
    apiVersion when given, else from the one table of target kinds."""
    if api_version and "/" in api_version:
        return api_version.split("/", 1)[0]
    res = TARGET_KINDS.get(kind)
    return res.group if res is not None else ""


@dataclass(frozen=True)
class MetricLabels:
    """The labels of §7.3 for one invoker and (for target and host families) its target."""

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
        """Labels every family carries (`repository` only for the Restic driver)."""
        out = {
            "invoker_kind": self.invoker_kind,
            "invoker_name": self.invoker_name,
            "namespace": self.namespace,
            "driver": self.driver,
        }
        if self.driver == "Restic":
            out["repository"] = self.repository
        out.update(self.extra or {})
        return out

    def target(self, kind: str, group: str, name: str) -> dict[str, str]:
        """Labels of a target family."""
        return {**self.invoker(), "kind": kind, "group": group, "name": name}

    def host(self, hostname: str) -> dict[str, str]:
        """Labels of the host families (this invoker's target)."""
        labels = self.target(self.target_kind, self.target_group, self.target_name)
        return {**labels, "hostname": hostname}

    @property
    def job(self) -> str:
        """The Pushgateway grouping key `job` (§7.1)."""
        return f"{self.invoker_kind.lower()}-{self.namespace}-{self.invoker_name}"

    def grouping(self, hostname: str | None = None) -> dict[str, str]:
        """The grouping key of a push: `job`, and `hostname` for host families (so one
        host's push does not replace another's; docs/metrics.md)."""
        key = {"job": self.job}
        if hostname is not None:
            key["hostname"] = hostname
        return key


class _Registry:
    """A registry being filled: one gauge per name, one child per label set."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._gauges: dict[str, Gauge] = {}

    def set(self, family: Family, labels: Mapping[str, str], value: float) -> None:
        for name in family.names:
            gauge = self._gauges.get(name)
            if gauge is None:
                gauge = Gauge(name, family.help, labelnames=list(labels), registry=self.registry)
                self._gauges[name] = gauge
            gauge.labels(**labels).set(value)


def duration_seconds(text: str | None) -> float:
    """A Go duration as status writes it (`1m3s`, `12.3s`, `1h0m5s`) in seconds (0 when
    unreadable)."""
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
    """Host backup families, summed over the host's snapshots; only `…_success` (0)
    when the host failed."""
    out = _Registry()
    host_labels = labels.host(host.hostname or "")
    ok = host.phase == "Succeeded"
    out.set(HOST_SUCCESS, host_labels, 1.0 if ok else 0.0)
    if not ok:
        return out.registry
    snaps = host.snapshots or []
    files = [s.file_stats for s in snaps if s.file_stats is not None]
    values = [
        (HOST_DURATION, duration_seconds(host.duration)),
        (HOST_SIZE, sum(_bytes(s.total_size) for s in snaps)),
        (HOST_UPLOADED, sum(_bytes(s.uploaded) for s in snaps)),
        (HOST_PROCESSING, sum(duration_seconds(s.processing_time) for s in snaps)),
        (HOST_FILES, float(sum(f.total_files or 0 for f in files))),
        (HOST_FILES_NEW, float(sum(f.new_files or 0 for f in files))),
        (HOST_FILES_MODIFIED, float(sum(f.modified_files or 0 for f in files))),
        (HOST_FILES_UNMODIFIED, float(sum(f.unmodified_files or 0 for f in files))),
    ]
    for family, value in values:
        out.set(family, host_labels, value)
    return out.registry


def host_restore_registry(
    labels: MetricLabels, hostname: str, ok: bool, seconds: float
) -> CollectorRegistry:
    """Host restore families; only `…_success` (0) when the host failed."""
    out = _Registry()
    host_labels = labels.host(hostname)
    out.set(RESTORE_HOST_SUCCESS, host_labels, 1.0 if ok else 0.0)
    if ok:
        out.set(RESTORE_HOST_DURATION, host_labels, seconds)
    return out.registry


@dataclass(frozen=True)
class RepositoryFacts:
    """What the post-backup actions learned about the repository (or its status says)."""

    name: str
    namespace: str
    backend: str
    bucket: str
    prefix: str
    integrity: bool
    size_bytes: int
    snapshot_count: int
    snapshots_removed: int


def backend_location(backend: Backend | None) -> tuple[str, str, str]:
    """(provider, bucket or container, prefix) of a Repository backend (§7.3 labels)."""
    if backend is None:
        return "", "", ""
    for spec in (backend.s3, backend.gcs, backend.b2):
        if spec is not None:
            return backend.provider(), spec.bucket, spec.prefix or ""
    for box in (backend.azure, backend.swift):
        if box is not None:
            return backend.provider(), box.container, box.prefix or ""
    return backend.provider(), "", ""


def repository_registry(labels: MetricLabels, facts: RepositoryFacts) -> CollectorRegistry:
    """Repository families, labelled with the Repository (its namespace overrides the
    invoker's)."""
    out = _Registry()
    repo_labels = {
        **labels.invoker(),
        "name": facts.name,
        "namespace": facts.namespace,
        "backend": facts.backend,
        "bucket": facts.bucket,
        "prefix": facts.prefix,
    }
    out.set(REPO_INTEGRITY, repo_labels, 1.0 if facts.integrity else 0.0)
    out.set(REPO_SIZE, repo_labels, float(facts.size_bytes))
    out.set(REPO_SNAPSHOTS, repo_labels, float(facts.snapshot_count))
    out.set(REPO_CLEANED, repo_labels, float(facts.snapshots_removed))
    return out.registry


@dataclass(frozen=True)
class TargetOutcome:
    """How one target of a session ended."""

    kind: str
    group: str
    name: str
    succeeded: bool
    hosts: int


@dataclass(frozen=True)
class SessionOutcome:
    """How a session ended: its result, duration, end time and targets."""

    succeeded: bool
    seconds: float
    finished_at: float
    """Unix time of the session's end."""
    targets: tuple[TargetOutcome, ...] = ()


def backup_session_registry(labels: MetricLabels, outcome: SessionOutcome) -> CollectorRegistry:
    """Session and target families of a BackupSession."""
    out = _Registry()
    inv = labels.invoker()
    out.set(SESSION_SUCCESS, inv, 1.0 if outcome.succeeded else 0.0)
    if outcome.succeeded:
        out.set(SESSION_DURATION, inv, outcome.seconds)
        out.set(SESSION_TARGETS, inv, float(len(outcome.targets)))
        out.set(SESSION_LAST_SUCCESS, inv, outcome.finished_at)
    for t in outcome.targets:
        tl = labels.target(t.kind, t.group, t.name)
        out.set(TARGET_SUCCESS, tl, 1.0 if t.succeeded else 0.0)
        if t.succeeded:
            out.set(TARGET_HOSTS, tl, float(t.hosts))
            out.set(TARGET_LAST_SUCCESS, tl, outcome.finished_at)
    return out.registry


def restore_session_registry(labels: MetricLabels, outcome: SessionOutcome) -> CollectorRegistry:
    """Session and target families of a RestoreSession."""
    out = _Registry()
    inv = labels.invoker()
    out.set(RESTORE_SUCCESS, inv, 1.0 if outcome.succeeded else 0.0)
    if outcome.succeeded:
        out.set(RESTORE_DURATION, inv, outcome.seconds)
        out.set(RESTORE_TARGETS, inv, float(len(outcome.targets)))
    for t in outcome.targets:
        tl = labels.target(t.kind, t.group, t.name)
        out.set(RESTORE_TARGET_SUCCESS, tl, 1.0 if t.succeeded else 0.0)
        if t.succeeded:
            out.set(RESTORE_TARGET_HOSTS, tl, float(t.hosts))
    return out.registry
