"""The restic data plane: backends, the async driver, errors, retention and locks.

What it is for: everything stash needs to run the real `restic` binary against a
Repository — `restic_target()` maps a backend and its secret to what restic needs,
`Restic` runs the commands and returns typed results, `errors` says what went wrong
in terms a person can act on, `retention_args()` and `stale_locks()` are the pure
rules. Import from here; the submodules are the implementation.

Not for: Kubernetes objects or sessions (controllers and the agent call this).
"""

from __future__ import annotations

from stash.restic.backend import ResticTarget, TargetFile, restic_target, write_target_files
from stash.restic.driver import Restic, ResticOptions
from stash.restic.errors import (
    BackendAuthFailed,
    BackendUnreachable,
    BackupCommandFailed,
    BackupIncomplete,
    BucketNotFound,
    FeatureUnavailable,
    Interrupted,
    InvalidBackend,
    MissingSecretKey,
    NoSpace,
    RepositoryLocked,
    RepositoryNotFound,
    ResticError,
    ResticTooOld,
    SnapshotNotFound,
    WrongPassword,
)
from stash.restic.locks import LockCleanup, remove_stale_locks, stale_locks
from stash.restic.models import (
    BackupProgress,
    BackupSummary,
    CheckResult,
    ForgetResult,
    InitResult,
    Key,
    LockInfo,
    RepositoryConfig,
    RepositoryStats,
    RestoreProgress,
    RestoreSummary,
    Snapshot,
    format_bytes,
    parse_bytes,
)
from stash.restic.progress import ProgressStream
from stash.restic.retention import retention_args
from stash.restic.version import MINIMUM, ResticVersion

__all__ = [
    "MINIMUM",
    "BackendAuthFailed",
    "BackendUnreachable",
    "BackupCommandFailed",
    "BackupIncomplete",
    "BackupProgress",
    "BackupSummary",
    "BucketNotFound",
    "CheckResult",
    "FeatureUnavailable",
    "ForgetResult",
    "InitResult",
    "Interrupted",
    "InvalidBackend",
    "Key",
    "LockCleanup",
    "LockInfo",
    "MissingSecretKey",
    "NoSpace",
    "ProgressStream",
    "RepositoryConfig",
    "RepositoryLocked",
    "RepositoryNotFound",
    "RepositoryStats",
    "Restic",
    "ResticError",
    "ResticOptions",
    "ResticTarget",
    "ResticTooOld",
    "ResticVersion",
    "RestoreProgress",
    "RestoreSummary",
    "Snapshot",
    "SnapshotNotFound",
    "TargetFile",
    "WrongPassword",
    "format_bytes",
    "parse_bytes",
    "remove_stale_locks",
    "restic_target",
    "retention_args",
    "stale_locks",
    "write_target_files",
]
