"""SubjectAccessReview: may a given user do a given thing? (authorization.k8s.io/v1)

What it is for: `review_access(kube, subject, attributes)` asks the apiserver's authorizer
(RBAC, webhooks, whatever the cluster runs) about a user other than the caller and returns
its `AccessDecision`. The caller needs `create` on `subjectaccessreviews`.

Not for: which permissions matter (the caller's rules decide that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stash.kube.client import JSON, Kube
from stash.kube.resources import SUBJECTACCESSREVIEWS

__all__ = ["AccessDecision", "ResourceAttributes", "Subject", "review_access"]


@dataclass(frozen=True)
class Subject:
    """Who is asked about: a user as the apiserver authenticated them."""

    user: str
    uid: str = ""
    groups: Sequence[str] = ()
    extra: Mapping[str, Sequence[str]] | None = None


@dataclass(frozen=True)
class ResourceAttributes:
    """What is asked about (`spec.resourceAttributes`); empty name: any object."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str = ""
    subresource: str = ""


@dataclass(frozen=True)
class AccessDecision:
    """The authorizer's answer; `reason` is its explanation (often empty on a refusal)."""

    allowed: bool
    reason: str = ""


async def review_access(kube: Kube, who: Subject, what: ResourceAttributes) -> AccessDecision:
    """Ask the apiserver whether `who` may do `what`."""
    attributes: JSON = {
        "verb": what.verb,
        "group": what.group,
        "resource": what.resource,
        "namespace": what.namespace,
    }
    if what.name:
        attributes["name"] = what.name
    if what.subresource:
        attributes["subresource"] = what.subresource
    spec: JSON = {"user": who.user, "resourceAttributes": attributes}
    if who.uid:
        spec["uid"] = who.uid
    if who.groups:
        spec["groups"] = list(who.groups)
    if who.extra:
        spec["extra"] = {k: list(v) for k, v in who.extra.items()}
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
    answer = await kube.create(SUBJECTACCESSREVIEWS, body)
    status = answer.get("status") or {}
    allowed = bool(status.get("allowed")) and not status.get("denied")
    reason = str(status.get("reason") or status.get("evaluationError") or "")
    return AccessDecision(allowed, reason)
