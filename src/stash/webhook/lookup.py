"""What the admission handlers need to read from the cluster, and one way to read it.

What it is for: the `Lookup` protocol — the invokers in a namespace, a Repository, a
backup invoker by name, the controller of a ReplicaSet/ReplicationController (GitOps
`pod` mode) and a namespace's labels — and `ApiLookup`, which reads them through the
apiserver with the raw JSON client. The operator may pass an informer-backed lookup
instead; tests pass an in-memory one.

Not for: deciding anything (handlers and `stash.inject` do), or caching.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from stash.api import BackupBatch, BackupConfiguration, Repository, RestoreSession
from stash.contract.resources import resource_of
from stash.kube.client import JSON, Kube, NotFound
from stash.kube.resources import NAMESPACES, REPLICASETS, REPLICATIONCONTROLLERS

__all__ = ["ApiLookup", "Lookup", "StaticLookup"]

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)


class Lookup(Protocol):
    """Reads the admission handlers make. Every method may raise on I/O errors."""

    async def backup_configurations(self, namespace: str) -> Sequence[BackupConfiguration]:
        """Every BackupConfiguration in `namespace`."""
        ...

    async def restore_sessions(self, namespace: str) -> Sequence[RestoreSession]:
        """Every RestoreSession in `namespace`."""
        ...

    async def repository(self, namespace: str, name: str) -> Repository | None:
        """One Repository, None when it does not exist."""
        ...

    async def backup_invoker(
        self, namespace: str, kind: str, name: str
    ) -> BackupConfiguration | BackupBatch | None:
        """A BackupConfiguration or BackupBatch by name, None when it does not exist."""
        ...

    async def controller_of(self, namespace: str, kind: str, name: str) -> tuple[str, str] | None:
        """(kind, name) of the controller owning the given object, if it has one."""
        ...

    async def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        """The labels of a namespace, None when it does not exist."""
        ...


_resource = resource_of

_OWNER_RESOURCES = {r.kind: r for r in (REPLICASETS, REPLICATIONCONTROLLERS)}


def _parse(model: type[_M], item: JSON) -> _M | None:
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        meta = item.get("metadata") or {}
        log.warning(
            "skipping unparsable %s %s/%s: %s",
            model.__name__,
            meta.get("namespace"),
            meta.get("name"),
            exc.errors(include_url=False)[:1],
        )
        return None


class ApiLookup:
    """`Lookup` through the apiserver (one request per call; no cache)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def _list(self, model: type[_M], kind: str, namespace: str) -> list[_M]:
        items, _ = await self.kube.list_all(_resource(kind), namespace)
        return [m for m in (_parse(model, i) for i in items) if m is not None]

    async def _get(self, model: type[_M], kind: str, namespace: str, name: str) -> _M | None:
        try:
            item = await self.kube.get(_resource(kind), name, namespace)
        except NotFound:
            return None
        return _parse(model, item)

    async def backup_configurations(self, namespace: str) -> Sequence[BackupConfiguration]:
        """Every BackupConfiguration in `namespace`."""
        return await self._list(BackupConfiguration, "BackupConfiguration", namespace)

    async def restore_sessions(self, namespace: str) -> Sequence[RestoreSession]:
        """Every RestoreSession in `namespace`."""
        return await self._list(RestoreSession, "RestoreSession", namespace)

    async def repository(self, namespace: str, name: str) -> Repository | None:
        """One Repository, None when it does not exist."""
        return await self._get(Repository, "Repository", namespace, name)

    async def backup_invoker(
        self, namespace: str, kind: str, name: str
    ) -> BackupConfiguration | BackupBatch | None:
        """A BackupConfiguration or BackupBatch by name, None when it does not exist."""
        if kind == "BackupBatch":
            return await self._get(BackupBatch, kind, namespace, name)
        if kind == "BackupConfiguration":
            return await self._get(BackupConfiguration, kind, namespace, name)
        return None

    async def controller_of(self, namespace: str, kind: str, name: str) -> tuple[str, str] | None:
        """(kind, name) of the controller of a ReplicaSet or ReplicationController."""
        res = _OWNER_RESOURCES.get(kind)
        if res is None:
            return None
        try:
            obj = await self.kube.get(res, name, namespace)
        except NotFound:
            return None
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("controller"):
                return str(ref.get("kind")), str(ref.get("name"))
        return None

    async def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        """The labels of a namespace, None when it does not exist."""
        try:
            obj = await self.kube.get(NAMESPACES, namespace)
        except NotFound:
            return None
        labels: Mapping[str, str] = (obj.get("metadata") or {}).get("labels") or {}
        return labels


class StaticLookup:
    """`Lookup` over objects held in memory (tests, benchmarks, or a cache snapshot)."""

    def __init__(
        self,
        objects: Sequence[BackupConfiguration | RestoreSession | Repository | BackupBatch] = (),
        owners: Mapping[tuple[str, str, str], tuple[str, str]] | None = None,
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.objects = list(objects)
        self.owners = dict(owners or {})
        """(namespace, kind, name) -> (controller kind, controller name)"""
        self.namespaces = dict(namespaces or {})

    def _in(self, model: type[_M], namespace: str) -> list[_M]:
        return [
            o for o in self.objects if isinstance(o, model) and o.metadata.namespace == namespace
        ]

    async def backup_configurations(self, namespace: str) -> Sequence[BackupConfiguration]:
        """Every BackupConfiguration in `namespace`."""
        return self._in(BackupConfiguration, namespace)

    async def restore_sessions(self, namespace: str) -> Sequence[RestoreSession]:
        """Every RestoreSession in `namespace`."""
        return self._in(RestoreSession, namespace)

    async def repository(self, namespace: str, name: str) -> Repository | None:
        """One Repository, None when it does not exist."""
        return next((r for r in self._in(Repository, namespace) if r.metadata.name == name), None)

    async def backup_invoker(
        self, namespace: str, kind: str, name: str
    ) -> BackupConfiguration | BackupBatch | None:
        """A BackupConfiguration or BackupBatch by name, None when it does not exist."""
        invokers: list[BackupConfiguration | BackupBatch] = [
            *self._in(BackupConfiguration, namespace),
            *self._in(BackupBatch, namespace),
        ]
        return next((i for i in invokers if i.kind == kind and i.metadata.name == name), None)

    async def controller_of(self, namespace: str, kind: str, name: str) -> tuple[str, str] | None:
        """(kind, name) of the controller owning the given object, if it has one."""
        return self.owners.get((namespace, kind, name))

    async def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        """The labels of a namespace, None when it does not exist."""
        return self.namespaces.get(namespace)
