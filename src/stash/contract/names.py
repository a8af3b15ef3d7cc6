"""Names the injection writes into workloads: containers, volumes, annotations.

Not for: behaviour. The webhook, validation, the agent and the operator import these so a
name is spelled in one place (stash-api.md §12). Workload kinds are in `workloads`.
"""

from __future__ import annotations

SIDECAR = "stash"
INIT_CONTAINER = "stash-init"
TMP_VOLUME = "stash-tmp-dir"
TMP_MOUNT = "/stash-tmp"
LOCAL_VOLUME = "stash-local"
LOCAL_RESTORE_VOLUME = "stash-local-restore"

_PREFIX = "stash.appscode.com/"
ANN_BACKUP_INVOKER = _PREFIX + "last-applied-backup-invoker"
ANN_BACKUP_INVOKER_KIND = _PREFIX + "last-applied-backup-invoker-kind"
ANN_BACKUP_HASH = _PREFIX + "last-applied-backup-invoker-hash"
ANN_RESTORE_INVOKER = _PREFIX + "last-applied-restore-invoker"
ANN_RESTORE_INVOKER_KIND = _PREFIX + "last-applied-restore-invoker-kind"
ANN_RESTORE_HASH = _PREFIX + "last-applied-restore-invoker-hash"
ANN_PULL_SECRETS = _PREFIX + "injected-image-pull-secrets"
"""Pod-template annotation: the imagePullSecrets we appended (so removal takes only those)."""
