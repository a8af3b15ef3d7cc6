"""The API resources the operator reads and writes, by name and by kind."""

from __future__ import annotations

from stash.kube.client import Resource

GROUP = "stash.appscode.com"

REPOSITORIES = Resource(GROUP, "v1alpha1", "repositories", "Repository")
BACKUPCONFIGURATIONS = Resource(GROUP, "v1beta1", "backupconfigurations", "BackupConfiguration")
BACKUPSESSIONS = Resource(GROUP, "v1beta1", "backupsessions", "BackupSession")
RESTORESESSIONS = Resource(GROUP, "v1beta1", "restoresessions", "RestoreSession")
BACKUPBATCHES = Resource(GROUP, "v1beta1", "backupbatches", "BackupBatch")

SECRETS = Resource("", "v1", "secrets", "Secret")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
PODS = Resource("", "v1", "pods", "Pod")
REPLICATIONCONTROLLERS = Resource("", "v1", "replicationcontrollers", "ReplicationController")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
STATEFULSETS = Resource("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet")
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
JOBS = Resource("batch", "v1", "jobs", "Job")
APPBINDINGS = Resource("appcatalog.appscode.com", "v1alpha1", "appbindings", "AppBinding")

#: Target kinds we can look up, by kind (the apiVersion in a TargetRef may vary).
TARGET_KINDS: dict[str, Resource] = {
    r.kind: r
    for r in (
        DEPLOYMENTS,
        STATEFULSETS,
        DAEMONSETS,
        REPLICASETS,
        REPLICATIONCONTROLLERS,
        PVCS,
        APPBINDINGS,
    )
}

#: Kinds whose backups run in an injected sidecar (stash-api.md §0).
SIDECAR_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController"}
)

TASKS = Resource(GROUP, "v1beta1", "tasks", "Task", namespaced=False)
FUNCTIONS = Resource(GROUP, "v1beta1", "functions", "Function", namespaced=False)
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
CLUSTERROLES = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False
)
