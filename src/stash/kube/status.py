"""Write an object's status subresource with optimistic concurrency and conflict retry.

`update_status` lets the caller compute the new status from the object it has (the
informer's copy, or the live object read with a GET) and PUTs `/status` carrying the
resourceVersion it computed from, so a concurrent change answers 409 Conflict instead of
being overwritten; on a conflict it starts over from a fresh read. The body shares the
cached object's metadata and spec (only the status is copied, for the caller to edit):
no copy of the whole object per write. A caller returning None, or a status with no
change (`merge_patch` is empty), means "nothing to change" (no write). It is a PUT
(the `update` verb, all the operator's and agents' roles grant on `…/status`), not a
patch. Not for: deciding the status (the caller's `compute`).
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Callable
from typing import Any

from stash.kube.client import JSON, Conflict, Kube, Resource


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`; {} when they are
    the same once keys set to None count as absent.

    Objects are patched key by key (a key `new` lacks, or sets to None, is removed);
    lists and scalars are replaced whole."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        if old[key] is not None:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if value == before:
            continue
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = merge_patch(before, value)
        else:
            patch[key] = value
    return patch


def _readable(obj: JSON) -> JSON:
    """`obj` for a `compute` to read: a deep copy of its status (which a compute may
    edit in place), the rest shared with the cache (read only)."""
    view = dict(obj)
    view["status"] = copy.deepcopy(obj.get("status"))
    if view["status"] is None:
        del view["status"]
    return view


async def update_status(
    kube: Kube,
    res: Resource,
    name: str,
    namespace: str | None,
    compute: Callable[[JSON], JSON | None],
    *,
    attempts: int = 6,
    current: JSON | None = None,
) -> JSON | None:
    """Set `status` to `compute(object)`; return the written object (None: no change).

    `current` (e.g. the informer's copy) saves the first read: if it is stale, the write
    conflicts and the next attempt reads the live object. `compute` must not change the
    object's metadata or spec (it may change the status it is given)."""
    for attempt in range(attempts):
        if attempt == 0 and current is not None:
            live, old_status = _readable(current), current.get("status")
        else:
            live = await kube.get(res, name, namespace)
            old_status = copy.deepcopy(live.get("status"))
        new_status = compute(live)
        if new_status is None:
            return None
        if not merge_patch(old_status or {}, new_status):
            return None
        try:
            body = {**live, "status": new_status}
            return await kube.replace(res, body, namespace, subresource="status")
        except Conflict:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.02 * (2**attempt) * (0.5 + random.random()))
    return None
