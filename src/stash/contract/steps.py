"""The Job steps' command-line contract: one flag table per step (stash-api.md §5.5).

What it is for: the flags of `backup-pvc`, `update-status`, `restore-pvc` and the
database steps (`backup-<engine>`, `restore-<engine>` for pg, mysql, redis, mongo, es) in one
table, used both to parse the agent's command line (`add_step_flags`) and to render a
Function's args for the operator's Job builder (`pvc_backup_args()`,
`update_status_args()`, `pvc_restore_args()`), so the two sides cannot drift.

Not for: the step bodies (`stash.agent.steps`) or building Jobs (`stash.controllers`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "BACKUP_DATABASE_FLAGS",
    "BACKUP_PVC_FLAGS",
    "DATABASE_ENGINES",
    "MONGO_FLAGS",
    "OUTPUT_FILE",
    "RESTORE_DATABASE_FLAGS",
    "RESTORE_PVC_FLAGS",
    "UPDATE_STATUS_FLAGS",
    "Flag",
    "add_step_flags",
    "pvc_backup_args",
    "pvc_restore_args",
    "split_list",
    "step_args",
    "update_status_args",
]

OUTPUT_FILE = "output.json"


@dataclass(frozen=True)
class Flag:
    """One step flag: `--<name>=<variable>` in a Function, with a default for the CLI."""

    name: str
    variable: str
    help: str
    default: str = ""

    @property
    def dest(self) -> str:
        """The argparse attribute name."""
        return self.name.replace("-", "_")


_COMMON = (
    Flag("namespace", "${NAMESPACE}", "namespace of the session and its invoker"),
    Flag("invoker-kind", "${INVOKER_KIND}", "kind of the invoker", "BackupConfiguration"),
    Flag("invoker-name", "${INVOKER_NAME}", "name of the invoker"),
    Flag("target-kind", "${TARGET_KIND}", "kind of the target", "PersistentVolumeClaim"),
    Flag("target-name", "${TARGET_NAME}", "name of the target"),
    Flag("target-namespace", "${TARGET_NAMESPACE}", "namespace of the target"),
    Flag("scratch-dir", "/stash-tmp", "scratch directory (restic cache, temp files)", "/stash-tmp"),
    Flag("enable-cache", "${ENABLE_CACHE:=true}", "use restic's cache", "true"),
    Flag("max-connections", "${MAX_CONNECTIONS:=0}", "backend connections (0: default)", "0"),
)
_OUTPUT = Flag(
    "output-dir", "${outputDir:=/stash-tmp/output}", "where output.json is", "/stash-tmp/output"
)
_HOSTNAME = Flag("hostname", "${HOSTNAME:=host-0}", "restic host name", "host-0")
_METRICS = (
    Flag("metrics-enabled", "${METRICS_ENABLED:=true}", "push metrics", "true"),
    Flag("pushgateway-url", "${PROMETHEUS_PUSHGATEWAY_URL:=}", "Pushgateway URL"),
)

BACKUP_PVC_FLAGS: tuple[Flag, ...] = (
    *_COMMON,
    Flag("backupsession", "${BACKUP_SESSION}", "the BackupSession this backup belongs to"),
    Flag("backup-paths", "${TARGET_PATHS}", "comma-separated paths to back up"),
    Flag("exclude", "${EXCLUDE_PATTERNS:=}", "comma-separated restic --exclude patterns"),
    _HOSTNAME,
    _OUTPUT,
)
UPDATE_STATUS_FLAGS: tuple[Flag, ...] = (
    *_COMMON,
    Flag("backupsession", "${BACKUP_SESSION}", "the BackupSession to update"),
    _HOSTNAME,
    _OUTPUT,
    *_METRICS,
)
RESTORE_PVC_FLAGS: tuple[Flag, ...] = (
    *_COMMON,
    Flag("restoresession", "${RESTORE_SESSION}", "the RestoreSession this restore belongs to"),
    Flag("restore-paths", "${RESTORE_PATHS:=}", "comma-separated paths to restore (latest)"),
    Flag("snapshots", "${RESTORE_SNAPSHOTS:=}", "comma-separated snapshot IDs to restore"),
    Flag("include", "${INCLUDE_PATTERNS:=}", "comma-separated restic --include patterns"),
    Flag("exclude", "${EXCLUDE_PATTERNS:=}", "comma-separated restic --exclude patterns"),
    _HOSTNAME,
    Flag("source-hostname", "${SOURCE_HOSTNAME:=}", "host whose snapshots to restore"),
    Flag("target-dir", "/", "directory restic restores into", "/"),
    *_METRICS,
)
_DATABASE = (
    Flag("appbinding", "${TARGET_NAME}", "the AppBinding of the database (for messages)"),
    Flag("args", "${args:=}", "extra arguments of the dump or load tool (split like a shell)"),
    Flag("wait-timeout", "${waitTimeout:=300}", "seconds to wait for the database", "300"),
)
BACKUP_DATABASE_FLAGS: tuple[Flag, ...] = (
    *_COMMON,
    Flag("backupsession", "${BACKUP_SESSION}", "the BackupSession this backup belongs to"),
    _HOSTNAME,
    _OUTPUT,
    *_DATABASE,
    Flag("dump-tool", "${backupCMD:=}", "the dump tool (default: the engine's)"),
)
RESTORE_DATABASE_FLAGS: tuple[Flag, ...] = (
    *_COMMON,
    Flag("restoresession", "${RESTORE_SESSION}", "the RestoreSession this restore belongs to"),
    _HOSTNAME,
    Flag("source-hostname", "${SOURCE_HOSTNAME:=}", "host whose dump to restore"),
    Flag("snapshots", "${RESTORE_SNAPSHOTS:=}", "the snapshot to restore (default: latest)"),
    *_DATABASE,
    Flag("load-tool", "${restoreCMD:=}", "the load tool (default: the engine's)"),
    *_METRICS,
)
#: MongoDB's own Task params (both steps).
MONGO_FLAGS: tuple[Flag, ...] = (
    Flag("auth-mechanism", "${authMechanism:=}", "MongoDB authentication mechanism"),
    Flag(
        "parallel-collections",
        "${numParallelCollections:=}",
        "collections dumped/restored at once (mongo-tools' --numParallelCollections)",
    ),
)
#: Elasticsearch/OpenSearch's own Task params (both steps; the restore ignores it).
ES_FLAGS: tuple[Flag, ...] = (
    Flag("indices", "${indices:=}", "index pattern to dump (default: every open index)"),
)
#: The database step commands (stash-api.md §9): `backup-<engine>` / `restore-<engine>`.
DATABASE_ENGINES = ("pg", "mysql", "redis", "mongo", "es")
_ENGINE_FLAGS: dict[str, tuple[Flag, ...]] = {"mongo": MONGO_FLAGS, "es": ES_FLAGS}
_STEPS = {
    "backup-pvc": BACKUP_PVC_FLAGS,
    "update-status": UPDATE_STATUS_FLAGS,
    "restore-pvc": RESTORE_PVC_FLAGS,
    **{
        f"backup-{engine}": (*BACKUP_DATABASE_FLAGS, *_ENGINE_FLAGS.get(engine, ()))
        for engine in DATABASE_ENGINES
    },
    **{
        f"restore-{engine}": (*RESTORE_DATABASE_FLAGS, *_ENGINE_FLAGS.get(engine, ()))
        for engine in DATABASE_ENGINES
    },
}


def step_args(command: str, values: Mapping[str, str] | None = None) -> list[str]:
    """`[command, --flag=value, ...]` for a step; unset values are the §5.5 variables."""
    given = dict(values or {})
    flags = _STEPS[command]
    unknown = set(given) - {f.name for f in flags}
    if unknown:
        raise ValueError(f"{command} has no flag(s) {sorted(unknown)}")
    return [command, *(f"--{f.name}={given.get(f.name, f.variable)}" for f in flags)]


def pvc_backup_args(values: Mapping[str, str] | None = None) -> list[str]:
    """The `pvc-backup` Function's args (`stash backup-pvc ...`)."""
    return step_args("backup-pvc", values)


def update_status_args(values: Mapping[str, str] | None = None) -> list[str]:
    """The `update-status` Function's args (`stash update-status ...`)."""
    return step_args("update-status", values)


def pvc_restore_args(values: Mapping[str, str] | None = None) -> list[str]:
    """The `pvc-restore` Function's args (`stash restore-pvc ...`)."""
    return step_args("restore-pvc", values)


def add_step_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Register a step's flags (from the same table the args are rendered from)."""
    for flag in _STEPS[command]:
        parser.add_argument(f"--{flag.name}", dest=flag.dest, default=flag.default, help=flag.help)


def split_list(text: str | None) -> tuple[str, ...]:
    """`a,b, c` -> ("a", "b", "c"); empty parts dropped."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())
