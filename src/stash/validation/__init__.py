"""Validation rules for every Stash kind (stash-api.md §1.1-§1.8, §2.3, §5.2.1).

What it is for: pure functions that say what is wrong with an object — a field path and
a message a person can act on — plus warnings for things that are allowed but probably
not meant. The validating webhook answers with them; the reconcilers use the same
functions to mark an object `Invalid` when it got past the webhook (webhook down, or
created before it was installed). `validate(obj, old, facts)` takes raw JSON and picks
the rules by kind; the `validate_<kind>` functions take parsed models.

Not for: I/O. Facts that live outside the object (the Repository an invoker uses, the
labels of its namespace) come in through `ValidationFacts`; when absent, those checks are
skipped. Nor for the Repository's usage policy, a fact about another object: the
validating webhook refuses with `stash.contract.usage` at admission, reconcilers report
it as the `RepositoryUsageAllowed` condition (NotReady, not Invalid).
Schema-level checks (types, required fields) are the CRD's job and are repeated here only
as far as parsing into the models needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from stash.api import (
    BackupBatch,
    BackupBlueprint,
    BackupConfiguration,
    BackupSession,
    Function,
    Repository,
    RestoreBatch,
    RestoreSession,
    Task,
)
from stash.validation.kinds import (
    validate_backup_batch,
    validate_backup_blueprint,
    validate_backup_configuration,
    validate_backup_session,
    validate_function,
    validate_repository,
    validate_restore_batch,
    validate_restore_session,
    validate_task,
)
from stash.validation.report import ValidationFacts, Verdict, Violation
from stash.validation.scalars import parse_duration, schedule_problem

__all__ = [
    "ValidationFacts",
    "Verdict",
    "Violation",
    "parse_duration",
    "schedule_problem",
    "validate",
    "validate_backup_batch",
    "validate_backup_blueprint",
    "validate_backup_configuration",
    "validate_backup_session",
    "validate_function",
    "validate_repository",
    "validate_restore_batch",
    "validate_restore_session",
    "validate_task",
]


def _loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_M = TypeVar("_M", bound=BaseModel)


def _parse(model: type[_M], obj: Mapping[str, Any] | None) -> _M | list[Violation]:
    try:
        return model.model_validate(obj or {})
    except ValidationError as exc:
        return [Violation(_loc(e["loc"]), e["msg"]) for e in exc.errors(include_url=False)]


_RULES: dict[str, tuple[type[BaseModel], Callable[..., Verdict], bool]] = {
    "BackupConfiguration": (BackupConfiguration, validate_backup_configuration, True),
    "RestoreSession": (RestoreSession, validate_restore_session, True),
    "BackupBatch": (BackupBatch, validate_backup_batch, True),
    "RestoreBatch": (RestoreBatch, validate_restore_batch, True),
    "Repository": (Repository, validate_repository, False),
    "BackupSession": (BackupSession, validate_backup_session, False),
    "BackupBlueprint": (BackupBlueprint, validate_backup_blueprint, False),
    "Task": (Task, validate_task, False),
    "Function": (Function, validate_function, False),
}


def validate(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    facts: ValidationFacts | None = None,
) -> Verdict:
    """Validate a raw Stash object (by its `kind`); `old` is the stored one on UPDATE.

    Objects that do not parse into their model get the parse errors as violations.
    Unknown kinds pass: they are not ours to judge.
    """
    kind = str(obj.get("kind", ""))
    rule = _RULES.get(kind)
    if rule is None:
        return Verdict()
    model, check, takes_facts = rule
    parsed = _parse(model, obj)
    if isinstance(parsed, list):
        return Verdict(tuple(parsed))
    previous = _parse(model, old) if old is not None else None
    if isinstance(previous, list):
        previous = None  # a stored object we cannot parse cannot constrain the update
    if takes_facts:
        return check(parsed, previous, facts)
    return check(parsed, previous)
