"""Rolling out an injection where Kubernetes does not: ReplicaSets and
ReplicationControllers (stash-api.md §4.1).

A Deployment, StatefulSet or DaemonSet replaces its pods when its pod template changes;
a ReplicaSet or ReplicationController does not, so after the agent was injected into
(or removed from) its template the running pods keep their old spec: the sidecar never
backs up, the init-container never restores. Upstream (`ensureWorkloadLatestState`,
stashed/stash v0.9) deletes the pods whose stash containers or applied-invoker hash
annotations differ from the template, and the controller recreates them from it. We do
the same: `stale_pods` decides (pure), `restart_stale_pods` deletes.

Not for: computing the injection (`stash.inject`) or patching the workload
(`controllers.workload`). Deployment-owned ReplicaSets are never targets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from stash.contract.names import ANN_BACKUP_HASH, ANN_RESTORE_HASH, INIT_CONTAINER, SIDECAR
from stash.controllers.context import ControllerContext
from stash.kube.client import JSON, KubeError, NotFound
from stash.kube.resources import PODS

__all__ = [
    "RESTARTED_KINDS",
    "carries_injection",
    "caught_up",
    "restart_stale_pods",
    "stale_pods",
]

log = logging.getLogger(__name__)

RECHECK = 2.0
#: Kinds whose controller does not replace pods when the template changes.
RESTARTED_KINDS = frozenset({"ReplicaSet", "ReplicationController"})


def _injection_state(meta: JSON, spec: JSON) -> tuple[bool, bool, str | None, str | None]:
    annotations = meta.get("annotations") or {}
    return (
        any(c.get("name") == SIDECAR for c in spec.get("containers") or []),
        any(c.get("name") == INIT_CONTAINER for c in spec.get("initContainers") or []),
        annotations.get(ANN_BACKUP_HASH),
        annotations.get(ANN_RESTORE_HASH),
    )


def carries_injection(workload: JSON) -> bool:
    """The workload's pod template carries a sidecar, an init-container or their hashes
    (its pods are worth checking; one without has nothing to roll out unless it was
    just removed, which the reconciler remembers)."""
    template = (workload.get("spec") or {}).get("template") or {}
    state = _injection_state(template.get("metadata") or {}, template.get("spec") or {})
    return state != (False, False, None, None)


def stale_pods(workload: JSON, pods: Iterable[JSON]) -> list[str]:
    """Names of the live pods `workload` controls whose injection (sidecar,
    init-container, applied-invoker hashes) differs from its pod template."""
    uid = workload["metadata"].get("uid")
    template = (workload.get("spec") or {}).get("template") or {}
    want = _injection_state(template.get("metadata") or {}, template.get("spec") or {})
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        owned = any(
            ref.get("controller") and ref.get("uid") == uid
            for ref in meta.get("ownerReferences") or []
        )
        if not owned or meta.get("deletionTimestamp"):
            continue
        if _injection_state(meta, pod.get("spec") or {}) != want:
            out.append(str(meta["name"]))
    return sorted(out)


def caught_up(workload: JSON) -> bool:
    """The workload's controller has observed its current spec (so the pods it creates
    from now on follow the current template)."""
    observed = (workload.get("status") or {}).get("observedGeneration")
    generation = workload["metadata"].get("generation")
    return generation is None or (observed is not None and observed >= generation)


async def restart_stale_pods(ctx: ControllerContext, kind: str, workload: JSON) -> float | None:
    """Delete the pods of a ReplicaSet / ReplicationController that do not carry its
    template's injection, so its controller recreates them. Returns the seconds after
    which to look again (its controller has not observed the template yet, so it may
    still create a pod from the old one; or pods were just deleted), else None."""
    if kind not in RESTARTED_KINDS:
        return None
    ns, name = str(workload["metadata"]["namespace"]), str(workload["metadata"]["name"])
    try:
        pods = (await ctx.kube.list(PODS, ns))["items"]
    except KubeError as exc:
        log.warning("listing the pods of %s %s/%s: %s", kind, ns, name, exc)
        return RECHECK
    deleted = 0
    for pod in stale_pods(workload, pods):
        try:
            await ctx.kube.delete(PODS, pod, ns)
        except NotFound:
            continue
        deleted += 1
    if deleted:
        log.info("%s %s/%s: %d pod(s) deleted to start with its template", kind, ns, name, deleted)
    return RECHECK if deleted or not caught_up(workload) else None
