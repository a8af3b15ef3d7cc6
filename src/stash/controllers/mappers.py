"""Which reconcile keys a change of another kind's object enqueues (the operator's wiring).

What it is for: small functions from an informer event's object to queue keys, read
from the caches' indexes — a Repository to the invokers that use it, a workload to the
invokers that target it, a Secret to the invokers of its Repositories, an invoker to
its unfinished sessions, a blueprint to the objects annotated with it — so
`stash.operator` only says which controller watches what.

Not for: rules (reconcilers) or the indexes' definitions (the modules whose kind they
index: `backupconfiguration.repository_key`, `workload.target_workload_keys`, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from stash.contract import phases
from stash.controllers.autobackup import BLUEPRINT_INDEX
from stash.controllers.workload import target_workload_keys, workload_key
from stash.kube.client import JSON, key_of
from stash.kube.informer import Informer

__all__ = [
    "Mapper",
    "by_index",
    "invokers_of_secret",
    "invokers_of_target",
    "own_kind_key",
    "secret_key",
    "sessions_of_invoker",
    "targets_of_blueprint",
    "workloads_of_repository",
]

Mapper = Callable[[JSON], list[str]]


def secret_key(obj: JSON) -> list[str]:
    """Index: the `namespace/name` of a Repository's storage Secret."""
    backend = (obj.get("spec") or {}).get("backend") or {}
    name = backend.get("storageSecretName")
    return [f"{obj['metadata']['namespace']}/{name}"] if name else []


def own_kind_key(kind: str) -> Mapper:
    """An object of `kind` -> its own `<Kind>/<namespace>/<name>` key."""

    def keys(obj: JSON) -> list[str]:
        return [workload_key(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])]

    return keys


def by_index(cache: Informer, index: str) -> Mapper:
    """An object -> the keys of `cache`'s objects whose `index` holds its key."""
    return lambda obj: [key_of(o) for o in cache.by_index(index, key_of(obj))]


def invokers_of_target(cache: Informer, kind: str) -> Mapper:
    """A workload of `kind` -> the invokers in `cache` that target it (index `target`)."""

    def keys(obj: JSON) -> list[str]:
        wk = workload_key(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
        return [key_of(b) for b in cache.by_index("target", wk)]

    return keys


def invokers_of_secret(repositories: Informer, cache: Informer) -> Mapper:
    """A Secret -> the invokers in `cache` using a Repository that stores with it."""

    def keys(secret: JSON) -> list[str]:
        out: list[str] = []
        for repo in repositories.by_index("secret", key_of(secret)):
            out.extend(key_of(o) for o in cache.by_index("repository", key_of(repo)))
        return out

    return keys


def sessions_of_invoker(sessions: Informer, kind: str) -> Mapper:
    """An invoker of `kind` -> its sessions that are not final yet."""

    def keys(invoker: JSON) -> list[str]:
        ns, name = invoker["metadata"]["namespace"], invoker["metadata"]["name"]
        return [
            key_of(s)
            for s in sessions.by_index("invoker", f"{kind}/{ns}/{name}")
            if (s.get("status") or {}).get("phase") not in phases.FINAL_SESSION_PHASES
        ]

    return keys


def targets_of_blueprint(targets: Mapping[str, Informer]) -> Mapper:
    """A blueprint -> the keys of the objects (of `targets`) whose annotation names it.
    `targets` is read at call time, so a kind added later (AppBinding) counts."""

    def keys(bp: JSON) -> list[str]:
        name = bp["metadata"]["name"]
        return [
            workload_key(kind, o["metadata"]["namespace"], o["metadata"]["name"])
            for kind, inf in list(targets.items())
            for o in inf.by_index(BLUEPRINT_INDEX, name)
        ]

    return keys


def workloads_of_repository(invokers: list[Informer]) -> Mapper:
    """A Repository -> the workloads targeted by the invokers (of those caches) using it."""

    def keys(repo: JSON) -> list[str]:
        key = key_of(repo)
        return [
            k
            for cache in invokers
            for user in cache.by_index("repository", key)
            for k in target_workload_keys(user)
        ]

    return keys
