"""What every reconciler shares: the client, the informer caches, events, the cron
engine and the clock. Built once by the operator (`stash.operator`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from stash.kube.client import JSON, Kube
from stash.kube.events import EventRecorder
from stash.kube.informer import Informer
from stash.scheduler import CronEngine

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
    """Dependencies of the reconcilers."""

    kube: Kube
    caches: Caches
    recorder: EventRecorder
    engine: CronEngine
    default_tz: str = "UTC"
    pushgateway_url: str | None = None
    heartbeat_timeout: float = 60.0
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    #: Extra hooks later pieces plug in (executor creation, workload repair).
    hooks: dict[str, Any] = field(default_factory=dict)

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
        ns: JSON | None = self.caches.namespaces.get(name)
        if ns is None:
            return None
        return dict(ns.get("metadata", {}).get("labels") or {})


def metadata_only(obj: JSON) -> JSON:
    """Informer transform for Secrets: keep metadata, drop the data (never cache secrets)."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta}
