"""Validating admission decisions for every Stash kind.

What it is for: given a decoded AdmissionRequest and a `Lookup`, gather the outside facts
some rules need (a Repository in another namespace, that namespace's labels) and return
the `Verdict` of `stash.validation`.

Not for: the rules (`stash.validation`) or HTTP (`stash.webhook.app`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stash.api import Repository
from stash.validation import ValidationFacts, Verdict, validate
from stash.webhook.lookup import Lookup
from stash.webhook.review import AdmissionRequest

__all__ = ["validate_request"]

_USES_REPOSITORY = frozenset(
    {"BackupConfiguration", "RestoreSession", "BackupBatch", "RestoreBatch"}
)


def _spec(obj: Mapping[str, Any] | None) -> Any:
    return obj.get("spec") if isinstance(obj, Mapping) else None


async def _context(
    obj: Mapping[str, Any], namespace: str, lookup: Lookup
) -> tuple[ValidationFacts, tuple[str, ...]]:
    """The Repository (when it is in another namespace) and the invoker namespace's labels."""
    spec = _spec(obj)
    ref = spec.get("repository") if isinstance(spec, dict) else None
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        return ValidationFacts(), ()
    repo_ns = ref.get("namespace") or namespace
    if not isinstance(repo_ns, str) or repo_ns == namespace:
        return ValidationFacts(), ()  # a Repository may always be used from its own namespace
    try:
        repository: Repository | None = await lookup.repository(repo_ns, ref["name"])
        labels = None
        policy = repository.spec.usage_policy if repository and repository.spec else None
        allowed = policy.allowed_namespaces if policy else None
        if allowed is not None and allowed.from_ == "Selector":
            labels = await lookup.namespace_labels(namespace)
    except Exception as exc:
        return ValidationFacts(), (f"stash: could not check the Repository's usage policy: {exc}",)
    return ValidationFacts(repository=repository, namespace_labels=labels), ()


async def validate_request(req: AdmissionRequest, lookup: Lookup) -> Verdict:
    """Validate the object of a CREATE or UPDATE; anything else is allowed."""
    obj = req.object
    if req.operation not in ("CREATE", "UPDATE") or obj is None:
        return Verdict()
    obj = {**obj, "kind": obj.get("kind") or req.kind.kind}
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        if meta.get("deletionTimestamp"):
            return Verdict()  # never stand between an object and its deletion
        if req.namespace and not meta.get("namespace"):
            obj["metadata"] = {**meta, "namespace": req.namespace}
    old = req.old_object
    if req.operation == "UPDATE" and _spec(obj) == _spec(old):
        # Metadata-only updates (labels, finalizers) are not judged again: rules may have
        # become stricter since the object was admitted, and it must stay manageable.
        return Verdict()
    context: ValidationFacts = ValidationFacts()
    warnings: tuple[str, ...] = ()
    if obj["kind"] in _USES_REPOSITORY:
        context, warnings = await _context(obj, req.namespace, lookup)
    verdict = validate(obj, old, context)
    return Verdict(verdict.violations, (*warnings, *verdict.warnings))
