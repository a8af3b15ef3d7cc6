"""The API resources of our own kinds (from `stash.api.KINDS`) and the kinds a target names.

What it is for: `REPOSITORIES`, `BACKUPSESSIONS`, ... as `Resource`s, derived from the
registry so a group, version or plural is written once (in `stash.api`); and
`TARGET_KINDS`, the resources a `target.ref` may name.

Not for: built-in Kubernetes resources (`stash.kube.resources`).
"""

from __future__ import annotations

from stash.api import KINDS
from stash.contract.workloads import WORKLOADS
from stash.kube.client import Resource
from stash.kube.resources import PVCS

__all__ = [
    "APPBINDINGS",
    "BACKUPBATCHES",
    "BACKUPBLUEPRINTS",
    "BACKUPCONFIGURATIONS",
    "BACKUPSESSIONS",
    "FUNCTIONS",
    "REPOSITORIES",
    "RESTOREBATCHES",
    "RESTORESESSIONS",
    "TARGET_KINDS",
    "TASKS",
    "resource_of",
]


def resource_of(kind: str) -> Resource:
    """The `Resource` of one of our kinds (`Repository`, `BackupSession`, ...)."""
    info = KINDS[kind]
    return Resource(
        info.group, info.version, info.plural, info.kind, namespaced=info.scope == "Namespaced"
    )


REPOSITORIES = resource_of("Repository")
BACKUPCONFIGURATIONS = resource_of("BackupConfiguration")
BACKUPSESSIONS = resource_of("BackupSession")
RESTORESESSIONS = resource_of("RestoreSession")
BACKUPBATCHES = resource_of("BackupBatch")
RESTOREBATCHES = resource_of("RestoreBatch")
BACKUPBLUEPRINTS = resource_of("BackupBlueprint")
TASKS = resource_of("Task")
FUNCTIONS = resource_of("Function")

#: Stash's catalog kind for databases (stash-api.md §9); not one of our CRDs yet.
APPBINDINGS = Resource("appcatalog.appscode.com", "v1alpha1", "appbindings", "AppBinding")

#: Target kinds we can look up, by kind (the apiVersion in a TargetRef may vary).
TARGET_KINDS: dict[str, Resource] = {**WORKLOADS, PVCS.kind: PVCS, APPBINDINGS.kind: APPBINDINGS}
