"""Permissive stand-ins for the Kubernetes core types that Stash objects embed.

What it is for: VolumeMount, ObjectMeta, PVC templates, label selectors, resources,
probes, affinity ... as they appear *inside* Stash specs. Kubernetes validates those
types itself (in the pod, the PVC, ...), so here they accept anything Kubernetes
accepts: a few fields we read are typed, everything else is kept verbatim and the CRD
schema marks them `x-kubernetes-preserve-unknown-fields`.

Not for: talking to the apiserver or modelling whole Kubernetes objects.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, StrictInt, WithJsonSchema

from stash.api.base import Bool, StashModel, Time

__all__ = [
    "IntOrString",
    "KubeList",
    "KubeObject",
    "LabelSelector",
    "LocalObjectReference",
    "ObjectMeta",
    "PartialObjectMeta",
    "PersistentVolumeClaimTemplate",
    "Quantity",
    "StringMap",
    "TypedObjectReference",
    "VolumeMount",
]

PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"

KubeObject = Annotated[dict[str, Any], WithJsonSchema({"type": "object", PRESERVE: True})]
"""An embedded Kubernetes struct (affinity, securityContext, probe, VolumeSource, ...)."""

KubeList = Annotated[
    list[dict[str, Any]],
    WithJsonSchema({"type": "array", "items": {"type": "object", PRESERVE: True}}),
]
"""A list of embedded Kubernetes structs (tolerations, env, volumes, ...)."""

StringMap = dict[str, str]
"""A `map[string]string` (labels, annotations, nodeSelector)."""

IntOrString = Annotated[StrictInt | str, WithJsonSchema({INT_OR_STRING: True})]
"""An `intstr.IntOrString` (a port number or name, a `resource.Quantity` like `1Gi`)."""

Quantity = IntOrString
"""A `resource.Quantity` such as `1Gi` or `500m` (int or string, as Kubernetes allows)."""


class _Open(StashModel):
    """A typed view of a Kubernetes struct that keeps the fields it does not name."""

    model_config = ConfigDict(extra="allow")


class ObjectMeta(_Open):
    """`metadata` of a top-level object; the apiserver owns its schema and validation."""

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    labels: StringMap | None = None
    annotations: StringMap | None = None
    owner_references: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None


class PartialObjectMeta(_Open):
    """The metadata part of a template (name, namespace, labels, annotations)."""

    name: str | None = None
    namespace: str | None = None
    labels: StringMap | None = None
    annotations: StringMap | None = None


class VolumeMount(_Open):
    """A core/v1 VolumeMount (name, mountPath, subPath, readOnly, ...)."""

    name: str
    mount_path: str
    sub_path: str | None = None
    read_only: Bool | None = None


class LocalObjectReference(_Open):
    """A core/v1 LocalObjectReference (`{name}`), e.g. an image pull secret."""

    name: str | None = None


class LabelSelector(_Open):
    """A metav1.LabelSelector (matchLabels, matchExpressions)."""

    match_labels: StringMap | None = None
    match_expressions: KubeList | None = None


class TypedObjectReference(_Open):
    """kmodules TypedObjectReference: a reference to an object of any kind."""

    api_group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None


class PersistentVolumeClaimTemplate(StashModel):
    """A PVC template (offshoot-api `PersistentVolumeClaim`): metadata plus a claim spec.

    Not an embedded resource: upstream templates carry no apiVersion/kind.
    """

    metadata: PartialObjectMeta | None = None
    spec: KubeObject | None = None
