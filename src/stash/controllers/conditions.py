"""The condition rules that more than one invoker shares, as pure functions.

What it is for: RepositoryFound, BackendSecretFound and the target's *Found condition
(BackupTargetFound of a BackupConfiguration, RestoreTargetFound of a RestoreSession),
decided from facts the reconciler gathered first (`RepositoryFacts`, `TargetFacts`),
so every invoker applies the same rule with the same words; `apply_checks` stamps them
onto a condition list.

The rules: a Repository that is being deleted (deletionTimestamp set) is not found;
while the Repository is not found its storage Secret cannot be checked (Unknown); a
target that cannot be looked up is Unknown with the reason, not False.

Not for: reading caches or the apiserver (`ControllerContext` gathers the facts), or
phases (`stash.contract.phases`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stash.api import Repository
from stash.api.common import Condition
from stash.contract import phases as P
from stash.contract.usage import usage_refusal
from stash.kube.client import JSON
from stash.kube.conditions import UNKNOWN, set_condition
from stash.validation import ValidationFacts

__all__ = [
    "Check",
    "InvokerFacts",
    "RepositoryFacts",
    "RepositoryState",
    "TargetFacts",
    "apply_checks",
    "repository_checks",
    "target_check",
    "usage_check",
]

RepositoryState = Literal["unset", "missing", "deleting", "found"]


@dataclass(frozen=True)
class Check:
    """One condition as a rule decided it, before it is stamped with a time."""

    type: str
    status: bool | str
    reason: str
    message: str


@dataclass(frozen=True)
class RepositoryFacts:
    """What the caches say about the Repository an invoker names."""

    key: str
    """`namespace/name` as the invoker names it (`""` when spec.repository.name is unset)."""
    state: RepositoryState
    secret: str | None = None
    """The Repository's spec.backend.storageSecretName (None: unset, or it does not parse)."""
    secret_found: bool = False
    repository: Repository | None = None
    """The parsed Repository, when it is found and parses."""

    @property
    def namespace(self) -> str:
        """The Repository's namespace (its storage Secret lives there too)."""
        return self.key.partition("/")[0]


@dataclass(frozen=True)
class TargetFacts:
    """What a lookup of the object a `target.ref` names found."""

    kind: str
    namespace: str
    name: str
    found: bool | None
    """None: it could not be checked (`detail` says why)."""
    detail: str = ""
    workload: JSON | None = None
    """The object, when found (host counts read it)."""


@dataclass(frozen=True)
class InvokerFacts:
    """What the caches and the apiserver say about what an invoker names."""

    repository: RepositoryFacts | None
    """None: not the Restic driver (no Repository is used)."""
    target: TargetFacts | None
    """None: spec.target.ref names no kind and name."""
    namespace_labels: dict[str, str] | None
    """Labels of the invoker's namespace (None: not known)."""

    def validation(self) -> ValidationFacts:
        """The facts validation rules need (the Repository only when it is found)."""
        repo = self.repository.repository if self.repository else None
        return ValidationFacts(repository=repo, namespace_labels=self.namespace_labels)


def unparsable(
    conditions: list[Condition] | None, error: Exception, generation: int | None = None
) -> list[Condition]:
    """`conditions` with ValidationPassed False for an object that does not parse (the
    parser's message, bounded)."""
    return set_condition(
        conditions,
        P.VALIDATION_PASSED,
        False,
        "ResourceValidationFailed",
        f"the object does not parse: {error}"[:1000],
        observed_generation=generation,
    )


def repository_checks(facts: RepositoryFacts) -> tuple[Check, Check]:
    """RepositoryFound and BackendSecretFound."""
    key = facts.key
    if facts.state != "found":
        message = {
            "unset": "spec.repository.name is not set",
            "missing": f"Repository {key} does not exist",
            "deleting": f"Repository {key} is being deleted",
        }[facts.state]
        return (
            Check(P.REPOSITORY_FOUND, False, "RepositoryNotAvailable", message),
            Check(
                P.BACKEND_SECRET_FOUND,
                UNKNOWN,
                "UnableToCheckBackendSecret",
                "the Repository is not available",
            ),
        )
    found = Check(P.REPOSITORY_FOUND, True, "RepositoryAvailable", f"Repository {key} found")
    if not facts.secret:
        message = f"Repository {key} has no spec.backend.storageSecretName"
        return found, Check(P.BACKEND_SECRET_FOUND, False, "BackendSecretNotAvailable", message)
    secret = f"Secret {facts.namespace}/{facts.secret}"
    if not facts.secret_found:
        message = f"{secret} (storage secret of Repository {key}) not found"
        return found, Check(P.BACKEND_SECRET_FOUND, False, "BackendSecretNotAvailable", message)
    return found, Check(P.BACKEND_SECRET_FOUND, True, "BackendSecretAvailable", f"{secret} found")


def usage_check(facts: InvokerFacts, namespace: str) -> Check | None:
    """RepositoryUsageAllowed: the Repository's usage policy allows `namespace` (None
    while the Repository is not found: RepositoryFound says so)."""
    found = facts.repository
    if found is None or found.repository is None:
        return None
    refusal = usage_refusal(found.repository, namespace, facts.namespace_labels)
    if refusal is not None:
        return Check(P.REPOSITORY_USAGE_ALLOWED, False, "RepositoryUsageNotAllowed", refusal)
    message = f"Repository {found.key} may be used from namespace {namespace}"
    return Check(P.REPOSITORY_USAGE_ALLOWED, True, "RepositoryUsageAllowed", message)


def target_check(type_: str, facts: TargetFacts) -> Check:
    """The target's *Found condition (`type_`: BackupTargetFound or RestoreTargetFound)."""
    where = f"{facts.kind} {facts.namespace}/{facts.name}"
    if facts.found is True:
        return Check(type_, True, "TargetAvailable", f"{where} found")
    if facts.found is False:
        return Check(type_, False, "TargetNotAvailable", facts.detail or f"{where} does not exist")
    return Check(type_, UNKNOWN, "UnableToCheckTargetAvailability", facts.detail)


def apply_checks(
    conditions: list[Condition] | None,
    checks: tuple[Check, ...] | list[Check],
    *,
    observed_generation: int | None = None,
) -> list[Condition]:
    """`conditions` with each check set (a time changes only when a status does)."""
    out = list(conditions or [])
    for c in checks:
        out = set_condition(
            out, c.type, c.status, c.reason, c.message, observed_generation=observed_generation
        )
    return out
