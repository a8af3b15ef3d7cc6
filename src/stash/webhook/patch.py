"""The JSON patch of a mutation: the RFC 6902 operations that turn the object as admitted
into the object as it should be stored.

What it is for: the admission response's patch, made in one walk of both documents.
`jsonpatch.make_patch` found the same changes for ~60% of a mutation's CPU time (it
serialises members to compare them and looks for moves); here the walk compares members
by type and value, emits `add`/`remove`/`replace` where they differ, and diffs lists
index by index (extra items added at the end or removed from it), which is what the
mutators do to a pod template (append a container, a volume). The patch may differ in
shape from jsonpatch's (no `move`), never in what it makes: applied to the original it
gives exactly the mutated document, JSON types included (1, 1.0 and true differ).

Not for: deciding what changes (the mutators return the mutated object).
"""

from __future__ import annotations

from typing import Any

__all__ = ["json_patch"]

Op = dict[str, Any]


def _pointer(path: str, key: str | int) -> str:
    return f"{path}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _diff(a: Any, b: Any, path: str, ops: list[Op]) -> None:
    if a is b:
        return
    if type(a) is not type(b):
        ops.append({"op": "replace", "path": path, "value": b})
    elif isinstance(a, dict):
        for key in a:
            if key not in b:
                ops.append({"op": "remove", "path": _pointer(path, key)})
        for key, value in b.items():
            if key in a:
                _diff(a[key], value, _pointer(path, key), ops)
            else:
                ops.append({"op": "add", "path": _pointer(path, key), "value": value})
    elif isinstance(a, list):
        for i in range(min(len(a), len(b))):
            _diff(a[i], b[i], _pointer(path, i), ops)
        for i in range(len(a), len(b)):
            ops.append({"op": "add", "path": _pointer(path, i), "value": b[i]})
        for i in range(len(a) - 1, len(b) - 1, -1):
            ops.append({"op": "remove", "path": _pointer(path, i)})
    elif a != b:
        ops.append({"op": "replace", "path": path, "value": b})


def json_patch(original: Any, mutated: Any) -> list[Op]:
    """The RFC 6902 patch that turns `original` into `mutated` (empty when equal)."""
    ops: list[Op] = []
    _diff(original, mutated, "", ops)
    return ops
