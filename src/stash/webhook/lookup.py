"""What the admission handlers need to read from the cluster, and one way to read it.

What it is for: the `Lookup` protocol — the invokers in a namespace, a Repository, a
backup invoker by name, the controller of a ReplicaSet/ReplicationController (GitOps
`pod` mode), a namespace's labels, the uid of a workload (is this request about the
object that exists?) and a SubjectAccessReview (may the requesting user do this?) — and
`ApiLookup`, which reads them through the apiserver with the raw JSON client. The
operator may pass an informer-backed lookup instead; tests pass an in-memory one.

Not for: deciding anything (handlers and `stash.inject` do), or caching.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from stash.api import (
    BackupBatch,
    BackupBlueprint,
    BackupConfiguration,
    Repository,
    RestoreBatch,
    RestoreSession,
)
from stash.contract.resources import resource_of
from stash.contract.workloads import WORKLOADS
from stash.kube.access import AccessDecision, ResourceAttributes, Subject, review_access
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

    async def blueprint(self, name: str) -> BackupBlueprint | None:
        """One (cluster-scoped) BackupBlueprint, None when it does not exist."""
        ...

    async def backup_batches(self, namespace: str) -> Sequence[BackupBatch]:
        """Every BackupBatch in `namespace` (their members may target a workload)."""
        ...

    async def restore_batches(self, namespace: str) -> Sequence[RestoreBatch]:
        """Every RestoreBatch in `namespace`."""
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

    async def uid_of(self, namespace: str, kind: str, name: str) -> str | None:
        """The uid of a workload (or a Pod's controller), None when it does not exist."""
        ...

    async def review(self, who: Subject, what: ResourceAttributes) -> AccessDecision:
        """May `who` do `what` (a SubjectAccessReview)?"""
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

    async def blueprint(self, name: str) -> BackupBlueprint | None:
        """One (cluster-scoped) BackupBlueprint, None when it does not exist."""
        try:
            item = await self.kube.get(_resource("BackupBlueprint"), name)
        except NotFound:
            return None
        return _parse(BackupBlueprint, item)

    async def backup_batches(self, namespace: str) -> Sequence[BackupBatch]:
        """Every BackupBatch in `namespace`."""
        return await self._list(BackupBatch, "BackupBatch", namespace)

    async def restore_batches(self, namespace: str) -> Sequence[RestoreBatch]:
        """Every RestoreBatch in `namespace`."""
        return await self._list(RestoreBatch, "RestoreBatch", namespace)

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

    async def uid_of(self, namespace: str, kind: str, name: str) -> str | None:
        """The uid of a workload (or a Pod's controller), None when it does not exist."""
        res = WORKLOADS.get(kind) or _OWNER_RESOURCES.get(kind)
        if res is None:
            return None
        try:
            obj = await self.kube.get(res, name, namespace)
        except NotFound:
            return None
        return str((obj.get("metadata") or {}).get("uid") or "") or None

    async def review(self, who: Subject, what: ResourceAttributes) -> AccessDecision:
        """May `who` do `what` (a SubjectAccessReview)?"""
        return await review_access(self.kube, who, what)


class StaticLookup:
    """`Lookup` over objects held in memory (tests, benchmarks, or a cache snapshot)."""

    def __init__(
        self,
        objects: Sequence[
            BackupConfiguration
            | RestoreSession
            | Repository
            | BackupBatch
            | RestoreBatch
            | BackupBlueprint
        ] = (),
        owners: Mapping[tuple[str, str, str], tuple[str, str]] | None = None,
        namespaces: Mapping[str, Mapping[str, str]] | None = None,
        uids: Mapping[tuple[str, str, str], str] | None = None,
        denied: set[tuple[str, str, str, str]] | None = None,
    ) -> None:
        self.objects = list(objects)
        self.owners = dict(owners or {})
        """(namespace, kind, name) -> (controller kind, controller name)"""
        self.namespaces = dict(namespaces or {})
        self.uids = dict(uids or {})
        """(namespace, kind, name) -> uid of the workloads that exist"""
        self.denied = set(denied or ())
        """(user, verb, resource, name) a SubjectAccessReview refuses; all else is allowed"""

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

    async def blueprint(self, name: str) -> BackupBlueprint | None:
        """One (cluster-scoped) BackupBlueprint, None when it does not exist."""
        return next(
            (b for b in self.objects if isinstance(b, BackupBlueprint) and b.metadata.name == name),
            None,
        )

    async def backup_batches(self, namespace: str) -> Sequence[BackupBatch]:
        """Every BackupBatch in `namespace`."""
        return self._in(BackupBatch, namespace)

    async def restore_batches(self, namespace: str) -> Sequence[RestoreBatch]:
        """Every RestoreBatch in `namespace`."""
        return self._in(RestoreBatch, namespace)

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

    async def uid_of(self, namespace: str, kind: str, name: str) -> str | None:
        """The uid of a workload (or a Pod's controller), None when it does not exist."""
        return self.uids.get((namespace, kind, name))

    async def review(self, who: Subject, what: ResourceAttributes) -> AccessDecision:
        """Refused when (user, verb, resource, name) is in `denied`."""
        if (who.user, what.verb, what.resource, what.name) in self.denied:
            return AccessDecision(False, "denied by the test's lookup")
        return AccessDecision(True)
