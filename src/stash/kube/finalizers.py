"""Add and remove finalizers with optimistic concurrency (a merge patch that carries the
resourceVersion it read, so a concurrent change is retried, not overwritten).

Used by the object-reconciler adapter (`stash.kube.controller.as_reconciler`). Not for:
deciding what must happen before a finalizer goes (the reconciler's `finalize` hook).
"""

from __future__ import annotations

from stash.kube.client import JSON, Kube, NotFound, Resource


async def ensure_finalizer(kube: Kube, res: Resource, obj: JSON, finalizer: str) -> JSON:
    """Add `finalizer` to `obj` if missing; return the (possibly updated) object."""
    meta = obj["metadata"]
    current = list(meta.get("finalizers") or [])
    if finalizer in current:
        return obj
    patch = {
        "metadata": {
            "finalizers": [*current, finalizer],
            "resourceVersion": meta["resourceVersion"],
        }
    }
    return await kube.patch(res, meta["name"], patch, meta.get("namespace"))


async def remove_finalizer(kube: Kube, res: Resource, obj: JSON, finalizer: str) -> None:
    """Remove `finalizer` from `obj`; a gone object or a conflict is left to the next pass."""
    meta = obj["metadata"]
    current = list(meta.get("finalizers") or [])
    if finalizer not in current:
        return
    patch = {
        "metadata": {
            "finalizers": [f for f in current if f != finalizer],
            "resourceVersion": meta["resourceVersion"],
        }
    }
    try:
        await kube.patch(res, meta["name"], patch, meta.get("namespace"))
    except NotFound:
        return
