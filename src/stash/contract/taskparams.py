"""The Task variables the operator sets when it builds a Job (stash-api.md §5.5).

What it is for: `OPERATOR_PARAMS`, the names whose values the operator computes (the agent
image, the Repository and its Secret, the target, the session, retention, the restore
rule, the host) — they win over an invoker's `task.params` when a Job is built
(`stash.controllers.jobs`), and validation refuses an invoker that sets one
(`operator_params_in`). Without this, the author of a BackupConfiguration could replace the
image the operator runs with its ServiceAccount, or pass restic flags the `target.args`
filter refuses.

Not for: computing the values (`stash.controllers.provisioning`).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["OPERATOR_PARAMS", "operator_params_in"]

OPERATOR_PARAMS = frozenset(
    {
        # the agent image and where it pushes metrics
        "STASH_DOCKER_REGISTRY",
        "STASH_DOCKER_IMAGE",
        "STASH_IMAGE_TAG",
        "PROMETHEUS_PUSHGATEWAY_URL",
        # the Repository and its storage Secret
        "REPOSITORY_NAME",
        "REPOSITORY_NAMESPACE",
        "REPOSITORY_PROVIDER",
        "REPOSITORY_BUCKET",
        "REPOSITORY_PREFIX",
        "REPOSITORY_ENDPOINT",
        "REPOSITORY_REGION",
        "REPOSITORY_INSECURE_TLS",
        "REPOSITORY_SECRET_NAME",
        "REPOSITORY_SECRET_NAMESPACE",
        "MAX_CONNECTIONS",
        # the target (from spec.target, filtered by validation)
        "TARGET_KIND",
        "TARGET_NAME",
        "TARGET_NAMESPACE",
        "TARGET_PATHS",
        "TARGET_MOUNT_PATH",
        "EXCLUDE_PATTERNS",
        "DRIVER_ARGS",
        "TARGET_APP_REPLICAS",
        "TARGET_APP_TYPE",
        "TARGET_APP_VERSION",
        "TARGET_APP_GROUP",
        "TARGET_APP_RESOURCE",
        # the session, its invoker and host
        "NAMESPACE",
        "BACKUP_SESSION",
        "RESTORE_SESSION",
        "INVOKER_KIND",
        "INVOKER_NAME",
        "HOSTNAME",
        "POD_ORDINAL",
        "ENABLE_CACHE",
        # retention and the restore rule (from their own spec fields)
        "RETENTION_KEEP_LAST",
        "RETENTION_PRUNE",
        "RETENTION_DRY_RUN",
        "SOURCE_HOSTNAME",
        "RESTORE_PATHS",
        "RESTORE_SNAPSHOTS",
        "INCLUDE_PATTERNS",
    }
)


def operator_params_in(names: Iterable[str]) -> list[str]:
    """The names among `names` that only the operator may set, in their order."""
    return [n for n in names if n in OPERATOR_PARAMS]
