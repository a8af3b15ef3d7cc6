"""What every reconciler shares: the client, the informer caches, events, the cron
engine, the operator's settings and the clock. Built once by the operator
(`stash.operator`). Its readers (`repository_facts`, `target_facts`, ...) gather the
facts the pure condition rules (`stash.controllers.conditions`) decide from.

Not for: rules (a reader says what is there, never what it means).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from stash.api import BackupConfiguration, Repository, RestoreSession
from stash.api.common import ObjectReference, TargetRef
from stash.contract.resources import TARGET_KINDS
from stash.controllers.conditions import InvokerFacts, RepositoryFacts, TargetFacts
from stash.kube.client import JSON, Kube, KubeError, NotFound
from stash.kube.events import EventRecorder
from stash.kube.informer import Informer
from stash.scheduler import CronEngine
from stash.sessionmetrics import SessionMetricsSink
from stash.settings import OperatorSettings

_M = TypeVar("_M", bound=BaseModel)


@dataclass
class Caches:
    """The informers whose caches reconcilers read (never the apiserver, for reads)."""

    repositories: Informer
    backupconfigurations: Informer
    backupsessions: Informer
    restoresessions: Informer
    secrets: Informer
    namespaces: Informer

    def all(self) -> list[Informer]:
        return [
            self.repositories,
            self.backupconfigurations,
            self.backupsessions,
            self.restoresessions,
            self.secrets,
            self.namespaces,
        ]


@dataclass
class ControllerContext:
    """Dependencies of the reconcilers (one per operator process)."""

    kube: Kube
    caches: Caches
    recorder: EventRecorder
    engine: CronEngine
    settings: OperatorSettings
    """The agent image and Pushgateway Jobs get, the default time zone of schedules, how
    long an executor's heartbeat may be silent."""
    workloads: Mapping[str, Informer] = field(default_factory=dict)
    """The workload informers by kind (targets are looked up here first)."""
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    session_metrics: SessionMetricsSink = field(default_factory=SessionMetricsSink)
    """Where session metrics go: the Pushgateway, or kept for the operator's /metrics."""

    _parsed: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    def parse(self, model: type[_M], obj: JSON) -> _M:
        """`model.model_validate(obj)`, remembered per (kind, key, resourceVersion): the
        same cached object is parsed once, however many reconciles read it."""
        meta = obj.get("metadata") or {}
        ck = (
            model.__name__,
            f"{meta.get('namespace')}/{meta.get('name')}",
            str(meta.get("resourceVersion")),
        )
        hit = self._parsed.get(ck)
        if hit is None:
            hit = model.model_validate(obj)
            if len(self._parsed) > 8192:
                self._parsed.clear()
            self._parsed[ck] = hit
        return hit

    def secret_exists(self, namespace: str, name: str) -> bool:
        """Whether a Secret exists (from the metadata-only secrets cache)."""
        return self.caches.secrets.get(f"{namespace}/{name}") is not None

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        """The labels of namespace `name` (None: not in the cache)."""
        ns: JSON | None = self.caches.namespaces.get(name)
        if ns is None:
            return None
        return dict(ns.get("metadata", {}).get("labels") or {})

    def repository(self, ref: ObjectReference | None, namespace: str) -> Repository | None:
        """The parsed Repository `ref` names (None: unset, not cached or unparseable)."""
        if ref is None:
            return None
        raw = self.caches.repositories.get(f"{ref.namespace or namespace}/{ref.name}")
        if raw is None:
            return None
        try:
            return self.parse(Repository, raw)
        except ValidationError:
            return None

    def repository_facts(self, ref: ObjectReference | None, namespace: str) -> RepositoryFacts:
        """What the caches say about the Repository `ref` names (from `namespace`)."""
        if ref is None or not ref.name:
            return RepositoryFacts("", "unset")
        key = f"{ref.namespace or namespace}/{ref.name}"
        raw = self.caches.repositories.get(key)
        if raw is None:
            return RepositoryFacts(key, "missing")
        if raw["metadata"].get("deletionTimestamp"):
            return RepositoryFacts(key, "deleting")
        repo = self.repository(ref, namespace)
        backend = repo.spec.backend if repo and repo.spec else None
        secret = backend.storage_secret_name if backend else None
        found = bool(secret) and self.secret_exists(key.partition("/")[0], str(secret))
        return RepositoryFacts(key, "found", secret, found, repo)

    async def target_facts(self, ref: TargetRef, namespace: str) -> TargetFacts:
        """Look up the object `ref` names: the workload caches answer "found"; a miss (or
        a kind without a cache) is asked of the apiserver."""
        kind, name = str(ref.kind), str(ref.name)
        ns = ref.namespace or namespace
        res = TARGET_KINDS.get(kind)
        if res is None:
            why = f"target kind {kind} is not one the operator can look up"
            return TargetFacts(kind, ns, name, None, why)
        cache = self.workloads.get(kind)
        cached = cache.get(f"{ns}/{name}") if cache is not None else None
        if cached is not None:
            return TargetFacts(kind, ns, name, True, workload=cached)
        try:
            live = await self.kube.get(res, name, ns)
        except NotFound:
            return TargetFacts(kind, ns, name, False)
        except KubeError as exc:
            why = f"looking up {kind} {ns}/{name}: {exc.message or exc}"
            return TargetFacts(kind, ns, name, None, why)
        return TargetFacts(kind, ns, name, True, workload=live)

    async def invoker_facts(self, invoker: BackupConfiguration | RestoreSession) -> InvokerFacts:
        """The Repository (Restic driver), the target and the namespace labels."""
        ns = str(invoker.metadata.namespace)
        spec = invoker.spec
        repository = None
        if spec is not None and (spec.driver or "Restic") == "Restic":
            repository = self.repository_facts(spec.repository, ns)
        ref = spec.target.ref if spec and spec.target else None
        target = await self.target_facts(ref, ns) if ref and ref.kind and ref.name else None
        return InvokerFacts(repository, target, self.namespace_labels(ns))


def metadata_only(obj: JSON) -> JSON:
    """Informer transform for Secrets: keep metadata, drop the data (never cache secrets)."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta}
