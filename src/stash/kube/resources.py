"""Built-in Kubernetes API resources, by name: where their objects live on the REST path.

What it is for: one spelling of each built-in group/version/plural that the operator, the
webhook, the agent or the dev tooling reads or writes. Our own kinds are in
`stash.contract.resources` (derived from `stash.api.KINDS`).

Not for: rules about what these objects mean to Stash.
"""

from __future__ import annotations

from stash.kube.client import Resource

__all__ = [
    "CLUSTERROLES",
    "CONFIGMAPS",
    "CRDS",
    "DAEMONSETS",
    "DEPLOYMENTCONFIGS",
    "DEPLOYMENTS",
    "EVENTS",
    "JOBS",
    "LEASES",
    "NAMESPACES",
    "NODES",
    "PODS",
    "PVCS",
    "PVS",
    "REPLICASETS",
    "REPLICATIONCONTROLLERS",
    "ROLEBINDINGS",
    "ROLES",
    "SECRETS",
    "SERVICEACCOUNTS",
    "STATEFULSETS",
    "SUBJECTACCESSREVIEWS",
]

_RBAC = "rbac.authorization.k8s.io"

NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
SECRETS = Resource("", "v1", "secrets", "Secret")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
PODS = Resource("", "v1", "pods", "Pod")
PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
PVS = Resource("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)
EVENTS = Resource("", "v1", "events", "Event")
REPLICATIONCONTROLLERS = Resource("", "v1", "replicationcontrollers", "ReplicationController")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
STATEFULSETS = Resource("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet")
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
DEPLOYMENTCONFIGS = Resource("apps.openshift.io", "v1", "deploymentconfigs", "DeploymentConfig")
JOBS = Resource("batch", "v1", "jobs", "Job")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
ROLEBINDINGS = Resource(_RBAC, "v1", "rolebindings", "RoleBinding")
ROLES = Resource(_RBAC, "v1", "roles", "Role")
SUBJECTACCESSREVIEWS = Resource(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)
CLUSTERROLES = Resource(_RBAC, "v1", "clusterroles", "ClusterRole", namespaced=False)
CRDS = Resource(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
)
