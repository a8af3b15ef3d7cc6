"""Write an object's status subresource with optimistic concurrency and conflict retry.

`update_status` reads the live object, lets the caller compute the new status from it,
and PUTs `/status` carrying the resourceVersion it read; on 409 Conflict it starts over
with a fresh read. A caller returning None means "nothing to change" (no write).
"""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import Callable

from stash.kube.client import JSON, Conflict, Kube, Resource


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
    """Set `status` to `compute(live_object)`; return the written object (None: no change).

    `current` (e.g. the informer's copy) saves the first read: if it is stale, the write
    conflicts and the next attempt reads the live object.
    """
    for attempt in range(attempts):
        if attempt == 0 and current is not None:
            live = copy.deepcopy(current)
        else:
            live = await kube.get(res, name, namespace)
        new_status = compute(live)
        if new_status is None or new_status == live.get("status"):
            return None
        live["status"] = new_status
        try:
            return await kube.replace(res, live, namespace, subresource="status")
        except Conflict:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.02 * (2**attempt) * (0.5 + random.random()))
    return None
