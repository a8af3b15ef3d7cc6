"""Validating admission decisions for every Stash kind.

What it is for: given a decoded AdmissionRequest and a `Lookup`, gather the outside facts
some rules need (the invoker's Repository, its namespace's labels), apply the rules of
`stash.validation`, and add what only admission can judge because it knows who asks:

* the Repository's usage policy (`stash.contract.usage`): refused when it refuses; a
  Repository in another namespace that does not exist yet is admitted with a warning (the
  operator keeps the invoker NotReady and injects nothing until the policy allows it); a
  lookup that fails refuses ("retry"), it never skips the rule;
* the author record (`stash.contract.authority.ANN_AUTHOR`): refused when it names
  anyone but the requesting user (or, for an unchanged authority view, the stored one);
* what the requesting user must be allowed for what the object makes the operator do
  (`invoker_access`, `repository_access`), asked with SubjectAccessReviews — only when
  the authority view (or, for a Repository, its spec) changes.

Not for: the rules themselves (`stash.validation`, `stash.contract`) or HTTP
(`stash.webhook.app`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from stash.api import BackupBatch, BackupConfiguration, Repository, RestoreBatch, RestoreSession
from stash.contract.authority import (
    ANN_AUTHOR,
    Access,
    Author,
    author_problem,
    authority_changed,
    invoker_access,
    repository_access,
)
from stash.contract.usage import usage_refusal
from stash.validation import ValidationFacts, Verdict, Violation, validate
from stash.webhook.lookup import Lookup
from stash.webhook.review import AdmissionRequest

__all__ = ["validate_request"]

_INVOKERS: dict[str, type[BackupConfiguration | RestoreSession | BackupBatch | RestoreBatch]] = {
    "BackupConfiguration": BackupConfiguration,
    "RestoreSession": RestoreSession,
    "BackupBatch": BackupBatch,
    "RestoreBatch": RestoreBatch,
}


def _spec(obj: Mapping[str, Any] | None) -> Any:
    return obj.get("spec") if isinstance(obj, Mapping) else None


async def _invoker_facts(
    obj: Mapping[str, Any], namespace: str, lookup: Lookup
) -> tuple[ValidationFacts, tuple[Violation, ...], tuple[str, ...]]:
    """The namespace's labels and the Repository; the usage policy's verdict on them."""
    labels = await lookup.namespace_labels(namespace)
    spec = _spec(obj)
    ref = spec.get("repository") if isinstance(spec, dict) else None
    if not isinstance(ref, dict) or not isinstance(ref.get("name"), str):
        return ValidationFacts(namespace_labels=labels), (), ()
    repo_ns = ref.get("namespace") or namespace
    if not isinstance(repo_ns, str):
        return ValidationFacts(namespace_labels=labels), (), ()
    repository = await lookup.repository(repo_ns, ref["name"])
    facts = ValidationFacts(repository=repository, namespace_labels=labels)
    if repository is None:
        if repo_ns == namespace:
            return facts, (), ()
        warning = (
            f"stash: Repository {repo_ns}/{ref['name']} does not exist yet; its usage policy "
            "is checked when it does, and until it allows this namespace the invoker stays "
            "NotReady and no agent is injected"
        )
        return facts, (), (warning,)
    refusal = usage_refusal(repository, namespace, labels)
    return facts, ((Violation("spec.repository", refusal),) if refusal else ()), ()


def _needed(
    kind: str, obj: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[tuple[str, Access]]:
    """What the requesting user must be allowed for this change (nothing when the parts
    that make the operator act did not change)."""
    model: type[BaseModel] | None = _INVOKERS.get(kind)
    if model is None and kind == "Repository":
        model = Repository
    if model is None or (kind in _INVOKERS and not authority_changed(obj, old)):
        return []
    try:
        parsed = model.model_validate(obj)
    except ValidationError:
        return []  # the parse errors are the verdict already
    if isinstance(parsed, Repository):
        return repository_access(parsed)
    assert isinstance(parsed, (BackupConfiguration, RestoreSession, BackupBatch, RestoreBatch))
    return invoker_access(parsed)


async def _access_violations(
    needed: list[tuple[str, Access]], requester: Author | None, lookup: Lookup
) -> list[Violation]:
    if not needed:
        return []
    if requester is None:
        why = "the request names no user, so what it asks the operator to do cannot be checked"
        return [Violation(needed[0][0], why)]
    decisions = await asyncio.gather(
        *(lookup.review(requester.subject(), access.attributes()) for _, access in needed)
    )
    out = []
    for (path, access), decision in zip(needed, decisions, strict=True):
        if not decision.allowed:
            out.append(
                Violation(
                    path,
                    f'user "{requester.username}" may not {access.describe()}, and '
                    f"{access.why}: Stash only does for a user what they may do themselves",
                )
            )
    return out


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
    kind = obj["kind"]
    requester = Author.from_user_info(req.user_info)
    record: tuple[Violation, ...] = ()
    if kind in _INVOKERS and (problem := author_problem(obj, old, requester)):
        record = (Violation(f"metadata.annotations[{ANN_AUTHOR}]", problem),)
    if req.operation == "UPDATE" and _spec(obj) == _spec(old):
        # Metadata-only updates (labels, finalizers) are not judged again: rules may have
        # become stricter since the object was admitted, and it must stay manageable.
        return Verdict(record)
    facts = ValidationFacts()
    usage: tuple[Violation, ...] = ()
    warnings: tuple[str, ...] = ()
    if kind in _INVOKERS:
        facts, usage, warnings = await _invoker_facts(obj, req.namespace, lookup)
    verdict = validate(obj, old, facts)
    access = await _access_violations(_needed(kind, obj, old), requester, lookup)
    violations = (*record, *usage, *verdict.violations, *access)
    return Verdict(violations, (*warnings, *verdict.warnings))
