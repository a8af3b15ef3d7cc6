"""The JSON patch of a mutation: `jsonpatch.make_patch(original, mutated)`, made cheap.

What it is for: the admission response's patch. jsonpatch walks both documents in
Python, which for a workload with its status and managedFields costs more than the
whole mutation. Object members that are identical on both sides can produce no
operation and cannot take part in one (jsonpatch only turns removed and added values into
moves), and members are addressed by key, so dropping them from both documents first
gives the same patch for a fraction of the work. Lists are left whole: their items are
addressed by position.

Not for: deciding what changes (the mutators return the mutated object).
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch

__all__ = ["json_patch"]


def _identical(a: Any, b: Any) -> bool:
    # `==` says 1 == True == 1.0; JSON does not, so equal values are also compared as JSON.
    return bool(a == b) and json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _without_common_members(a: Any, b: Any) -> tuple[Any, Any]:
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return a, b
    left: dict[str, Any] = {}
    right: dict[str, Any] = {}
    for key, value in a.items():
        if key not in b:
            left[key] = value
        elif not _identical(value, b[key]):
            left[key], right[key] = _without_common_members(value, b[key])
    for key, value in b.items():
        if key not in a:
            right[key] = value
    return left, right


def json_patch(original: Any, mutated: Any) -> list[dict[str, Any]]:
    """The RFC 6902 patch that turns `original` into `mutated` (empty when equal)."""
    if _identical(original, mutated):
        return []
    src, dst = _without_common_members(original, mutated)
    ops: list[dict[str, Any]] = jsonpatch.make_patch(src, dst).patch
    return ops
