"""Pure defaulting of Stash objects at admission (stash-api.md §1.5, §5.3).

What it is for: moving a RestoreSession's deprecated `spec.rules` into `spec.target.rules`,
and giving a hand-made BackupSession the invoker and target labels that sidecars select
sessions by. Each function returns a new object and never changes its input; the
controllers may call them too.

Not for: validation (`stash.validation`) or reading the invoker (the caller passes it).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from stash.api import BackupBatch, BackupConfiguration
from stash.api.common import TargetRef
from stash.contract.sessions import (
    LABEL_INVOKER_NAME,
    LABEL_INVOKER_TYPE,
    LABEL_TARGET_KIND,
    LABEL_TARGET_NAME,
    LABEL_TARGET_NAMESPACE,
    label_value,
)

__all__ = [
    "LABEL_INVOKER_NAME",
    "LABEL_INVOKER_TYPE",
    "LABEL_TARGET_KIND",
    "LABEL_TARGET_NAME",
    "LABEL_TARGET_NAMESPACE",
    "default_backup_session_labels",
    "migrate_restore_rules",
]


def migrate_restore_rules(restore_session: Mapping[str, Any]) -> dict[str, Any]:
    """Move deprecated `spec.rules` into `spec.target.rules` (when the latter is empty).

    With both set nothing is moved: validation refuses the object and says which to keep,
    rather than one silently replacing the other.
    """
    out = copy.deepcopy(dict(restore_session))
    spec = out.get("spec")
    if not isinstance(spec, dict) or not spec.get("rules"):
        return out
    target = spec.get("target")
    if target is None:
        target = spec["target"] = {}
    if not isinstance(target, dict) or target.get("rules"):
        return out
    target["rules"] = spec.pop("rules")
    return out


def _first_target(invoker: BackupConfiguration | BackupBatch) -> TargetRef | None:
    if isinstance(invoker, BackupConfiguration):
        target = invoker.spec.target if invoker.spec else None
    else:
        members = (invoker.spec.members if invoker.spec else None) or []
        target = members[0].target if members else None
    return target.ref if target else None


def default_backup_session_labels(
    session: Mapping[str, Any], invoker: BackupConfiguration | BackupBatch | None
) -> dict[str, Any]:
    """Add the invoker labels (from `spec.invoker`) and target labels (from the invoker's
    first target) that are missing; labels already set are never changed."""
    out = copy.deepcopy(dict(session))
    spec = out.get("spec")
    ref = spec.get("invoker") if isinstance(spec, dict) else None
    if not isinstance(ref, dict):
        return out
    wanted: dict[str, str] = {}
    if isinstance(ref.get("kind"), str) and ref["kind"]:
        wanted[LABEL_INVOKER_TYPE] = ref["kind"]
    if isinstance(ref.get("name"), str) and ref["name"]:
        wanted[LABEL_INVOKER_NAME] = ref["name"]
    target = _first_target(invoker) if invoker is not None else None
    if target is not None and invoker is not None:
        namespace = target.namespace or invoker.metadata.namespace
        for key, value in (
            (LABEL_TARGET_KIND, target.kind),
            (LABEL_TARGET_NAME, target.name),
            (LABEL_TARGET_NAMESPACE, namespace),
        ):
            if value:
                wanted[key] = value
    meta = out.setdefault("metadata", {})
    labels = meta.get("labels")
    if not isinstance(labels, dict):
        labels = {}
    missing = {k: label_value(v) for k, v in wanted.items() if k not in labels}
    if missing:
        meta["labels"] = {**labels, **missing}
    return out
