"""Typed results of restic commands, parsed from its `--json` output.

What it is for: frozen pydantic models of the messages restic prints (backup/restore
`status` and `summary` lines, snapshots, forget groups, stats, keys, locks, config),
the result types the driver returns, and restic's human size strings (`4.174 MiB`,
as in Repository status and metrics, stash-api.md §2.3, §7.2).

Not for: running restic or deciding anything. Unknown fields are ignored so a newer
restic that adds fields still parses.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "BackupError",
    "BackupProgress",
    "BackupSummary",
    "CheckResult",
    "ForgetGroup",
    "ForgetResult",
    "InitResult",
    "KeepReason",
    "Key",
    "LockInfo",
    "RepositoryConfig",
    "RepositoryStats",
    "RestoreProgress",
    "RestoreSummary",
    "Snapshot",
    "SnapshotSummary",
    "format_bytes",
    "parse_bytes",
]


def _none_to_empty(value: Any) -> Any:
    return () if value is None else value


StrTuple = Annotated[tuple[str, ...], BeforeValidator(_none_to_empty)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class SnapshotSummary(_Out):
    """What the backup that made a snapshot found (restic 0.17+ stores it)."""

    backup_start: datetime | None = None
    backup_end: datetime | None = None
    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs_new: int = 0
    dirs_changed: int = 0
    dirs_unmodified: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    data_added: int = 0
    data_added_packed: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0


class Snapshot(_Out):
    """One snapshot, as `restic snapshots --json` lists it."""

    id: str
    short_id: str = ""
    time: datetime
    tree: str = ""
    paths: StrTuple = ()
    hostname: str = ""
    username: str = ""
    uid: int = 0
    gid: int = 0
    tags: StrTuple = ()
    parent: str | None = None
    program_version: str | None = None
    summary: SnapshotSummary | None = None


class BackupProgress(_Out):
    """A backup `status` line: how far restic is."""

    seconds_elapsed: int = 0
    seconds_remaining: int = 0
    percent_done: float = 0.0
    total_files: int = 0
    files_done: int = 0
    total_bytes: int = 0
    bytes_done: int = 0
    error_count: int = 0
    current_files: StrTuple = ()


class BackupError(_Out):
    """A file restic could not back up (an `error` line)."""

    message: str
    during: str = ""
    item: str = ""


class BackupSummary(_Out):
    """The backup `summary` line: what was added, and the new snapshot's ID."""

    files_new: int = 0
    files_changed: int = 0
    files_unmodified: int = 0
    dirs_new: int = 0
    dirs_changed: int = 0
    dirs_unmodified: int = 0
    data_blobs: int = 0
    tree_blobs: int = 0
    data_added: int = 0
    data_added_packed: int = 0
    total_files_processed: int = 0
    total_bytes_processed: int = 0
    total_duration: float = 0.0
    backup_start: datetime | None = None
    backup_end: datetime | None = None
    snapshot_id: str | None = None
    dry_run: bool = False
    errors: tuple[BackupError, ...] = ()
    """Per-file errors restic reported during the run (not part of restic's summary)."""


class RestoreProgress(_Out):
    """A restore `status` line."""

    seconds_elapsed: int = 0
    seconds_remaining: int = 0
    percent_done: float = 0.0
    total_files: int = 0
    files_restored: int = 0
    files_skipped: int = 0
    files_deleted: int = 0
    total_bytes: int = 0
    bytes_restored: int = 0
    bytes_skipped: int = 0


class RestoreSummary(_Out):
    """The restore `summary` line."""

    seconds_elapsed: int = 0
    total_files: int = 0
    files_restored: int = 0
    files_skipped: int = 0
    files_deleted: int = 0
    total_bytes: int = 0
    bytes_restored: int = 0
    bytes_skipped: int = 0


class KeepReason(_Out):
    """Why `forget` kept a snapshot (e.g. "daily snapshot", "last snapshot")."""

    snapshot: Snapshot
    matches: StrTuple = ()


class ForgetGroup(_Out):
    """One group of snapshots (by host and paths) and what `forget` did to it."""

    host: str = ""
    paths: StrTuple = ()
    tags: StrTuple = ()
    keep: Annotated[tuple[Snapshot, ...], BeforeValidator(_none_to_empty)] = ()
    remove: Annotated[tuple[Snapshot, ...], BeforeValidator(_none_to_empty)] = ()
    reasons: Annotated[tuple[KeepReason, ...], BeforeValidator(_none_to_empty)] = ()


class ForgetResult(_Out):
    """What `forget` kept and removed, over all groups."""

    groups: tuple[ForgetGroup, ...] = ()
    dry_run: bool = False
    pruned: bool = False

    @property
    def kept(self) -> tuple[Snapshot, ...]:
        """Snapshots kept, over all groups."""
        return tuple(s for g in self.groups for s in g.keep)

    @property
    def removed(self) -> tuple[Snapshot, ...]:
        """Snapshots removed (or, with dry_run, that would be), over all groups."""
        return tuple(s for g in self.groups for s in g.remove)


class CheckResult(_Out):
    """The outcome of `restic check`: `ok` is restic's exit status 0."""

    ok: bool
    num_errors: int = 0
    broken_packs: StrTuple = ()
    suggest_repair_index: bool = False
    suggest_prune: bool = False
    messages: StrTuple = ()
    """restic's error messages, if any (never secret-bearing: restic redacts URLs)."""


class RepositoryStats(_Out):
    """`restic stats --mode raw-data --json`: the repository's stored size."""

    total_size: int = 0
    total_uncompressed_size: int = 0
    compression_ratio: float = 0.0
    compression_progress: float = 0.0
    compression_space_saving: float = 0.0
    total_blob_count: int = 0
    snapshots_count: int = 0

    @property
    def total_size_human(self) -> str:
        """The size as restic prints it and Repository status stores it, e.g. "4.174 MiB"."""
        return format_bytes(self.total_size)


class Key(_Out):
    """A repository key (`restic key list --json`)."""

    id: str
    current: bool = False
    user_name: str = Field(default="", alias="userName")
    host_name: str = Field(default="", alias="hostName")
    created: str = ""


class RepositoryConfig(_Out):
    """The repository config (`restic cat config`)."""

    version: int
    id: str
    chunker_polynomial: str = ""


class InitResult(_Out):
    """`init` outcome: the repository's ID and whether this call created it."""

    repository_id: str
    created: bool


class LockInfo(_Out):
    """A lock in the repository (`restic list locks` + `restic cat lock ID`)."""

    id: str
    time: datetime
    exclusive: bool = False
    hostname: str = ""
    username: str = ""
    pid: int = 0
    uid: int = 0
    gid: int = 0

    def age(self, now: datetime) -> timedelta:
        """How long ago the lock was created or last refreshed (restic refreshes it)."""
        return now - self.time


_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]iB|B)?\s*$")


def format_bytes(n: int) -> str:
    """Format a byte count the way restic does: "512 B", "4.174 MiB", "1.000 GiB"."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.3f} {unit}"
    return f"{n} B"


def parse_bytes(text: str) -> int:
    """Parse a restic size string ("4.174 MiB", "512 B", "0 B") into bytes (rounded)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a restic size: {text!r}")
    return round(float(match[1]) * _UNITS[match[2] or "B"])
