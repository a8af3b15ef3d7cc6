"""Informer: list, then watch from the list's resourceVersion, into an indexed cache.

One informer per (resource, namespace, label selector). It keeps an in-memory cache of
raw JSON objects (managedFields and the last-applied annotation stripped, the largest
parts of most objects; keys and short strings shared between objects, `compact`), calls
its handlers on every change, re-lists on 410 Gone, reconnects with capped exponential
backoff on errors, resumes from the last seen resourceVersion (bookmarks included) when
a watch simply ends, and periodically
re-delivers every cached object (resync) so level-triggered reconcilers catch up with
anything they missed. Not for: deciding what a change means (handlers map objects to
work-queue keys).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
from collections.abc import Callable, Iterable
from sys import intern
from typing import Any

import aiohttp

from stash.kube.client import JSON, Gone, Kube, KubeError, Resource, key_of

log = logging.getLogger(__name__)

#: (event type, new object, old object or None). Types: ADDED, MODIFIED, DELETED, SYNC.
Handler = Callable[[str, JSON, JSON | None], None]
Indexer = Callable[[JSON], Iterable[str]]

_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim(obj: JSON) -> JSON:
    """Drop the parts of an object no controller reads, to keep the cache small."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        ann = meta.get("annotations")
        if isinstance(ann, dict) and _LAST_APPLIED in ann:
            ann = dict(ann)
            ann.pop(_LAST_APPLIED)
            meta["annotations"] = ann
    return obj


#: Strings up to this long are shared between cached objects (`compact`).
_SHARED_STRING = 128


def compact(value: Any) -> Any:
    """`value` rebuilt with its keys and short strings interned: ten thousand cached
    objects of one kind repeat the same keys, kinds, phases, reasons and timestamps, and
    each parsed watch event brings its own copies (about half of a cached
    BackupConfiguration's memory)."""
    if isinstance(value, dict):
        return {intern(k): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, str) and len(value) <= _SHARED_STRING:
        return intern(value)
    return value


class Informer:
    """A watched, cached view of one kind of object."""

    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        resync_period: float = 300.0,
        watch_timeout: int = 300,
        max_backoff: float = 30.0,
        transform: Callable[[JSON], JSON] = slim,
        on_failure: Callable[[Resource], None] | None = None,
        metadata_only: bool = False,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.transform = transform
        #: List and watch PartialObjectMetadata: the apiserver never sends the rest.
        self.metadata_only = metadata_only
        #: Called on each failed list or watch (not on a watch that simply ends, nor 410).
        self.on_failure = on_failure
        self._cache: dict[str, JSON] = {}
        self._handlers: list[Handler] = []
        self._indexers: dict[str, Indexer] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}
        self._rv = ""
        self.synced = asyncio.Event()
        #: Watch (re)starts after the first, for metrics and tests.
        self.restarts = 0
        self.relists = 0

    # ----------------------------------------------------------------- wiring
    def add_handler(self, handler: Handler) -> None:
        """Call `handler` on every change (and on resync)."""
        self._handlers.append(handler)

    def add_index(self, name: str, indexer: Indexer) -> None:
        """Maintain an index `name`: value -> keys of objects for which indexer yields value."""
        self._indexers[name] = indexer
        self._indexes[name] = {}
        for key, obj in self._cache.items():
            self._index(key, obj)

    # ----------------------------------------------------------------- reads
    def get(self, key: str) -> JSON | None:
        """The cached object with this `namespace/name` key, or None."""
        return self._cache.get(key)

    def list(self, namespace: str | None = None) -> builtins.list[JSON]:
        """Every cached object (optionally in one namespace)."""
        if namespace is None:
            return list(self._cache.values())
        return [o for o in self._cache.values() if o["metadata"].get("namespace") == namespace]

    def by_index(self, name: str, value: str) -> builtins.list[JSON]:
        """Cached objects whose index `name` contains `value`."""
        keys = self._indexes[name].get(value, set())
        return [self._cache[k] for k in sorted(keys) if k in self._cache]

    def index_keys(self, name: str, value: str) -> frozenset[str]:
        """The keys of the cached objects whose index `name` contains `value`."""
        return frozenset(self._indexes[name].get(value, ()))

    def __len__(self) -> int:
        return len(self._cache)

    def progress(self) -> int:
        """How many lists have succeeded (grows when a restarted informer is back)."""
        return self.relists

    async def holds(self, key: str) -> None:
        """Wait until the cache holds the object `key`."""
        appeared = asyncio.Event()

        def handler(_kind: str, obj: JSON, _old: JSON | None) -> None:
            if key_of(obj) == key:
                appeared.set()

        self._handlers.append(handler)
        try:
            if key not in self._cache:
                await appeared.wait()
        finally:
            self._handlers.remove(handler)

    # ----------------------------------------------------------------- running
    async def run(self) -> None:
        """List and watch until cancelled."""
        resync = asyncio.create_task(self._resync_loop(), name=f"resync {self.resource.plural}")
        failures = 0
        try:
            need_list = True
            while True:
                try:
                    if need_list:
                        await self._list()
                        need_list = False
                    await self._watch()
                    failures = 0
                    self.restarts += 1
                except Gone:
                    log.info(
                        "%s: resourceVersion %s expired, re-listing", self.resource.plural, self._rv
                    )
                    need_list = True
                    self.restarts += 1
                except (KubeError, aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
                    failures += 1
                    if self.on_failure is not None:
                        self.on_failure(self.resource)
                    delay = min(self.max_backoff, 0.5 * 2 ** min(failures, 8))
                    delay *= 0.8 + 0.4 * random.random()
                    log.warning(
                        "%s: watch failed (%s); retrying in %.1fs", self.resource.plural, exc, delay
                    )
                    self.restarts += 1
                    await asyncio.sleep(delay)
                    # After an outage the apiserver may have compacted past our RV; a
                    # fresh list is the safe way back.
                    need_list = True
        finally:
            resync.cancel()

    async def _list(self) -> None:
        items, rv = await self.kube.list_all(
            self.resource,
            self.namespace,
            label_selector=self.label_selector,
            metadata_only=self.metadata_only,
        )
        self.relists += 1
        fresh = {key_of(o): compact(self.transform(o)) for o in items}
        old = self._cache
        self._cache = {}
        for name in self._indexes:
            self._indexes[name] = {}
        for key, obj in fresh.items():
            self._store(key, obj)
        self._rv = rv
        self.synced.set()
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None:
                self._emit("ADDED", obj, None)
            elif prev["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._emit("MODIFIED", obj, prev)
        for key, prev in old.items():
            if key not in fresh:
                self._emit("DELETED", prev, None)

    async def _watch(self) -> None:
        async for event in self.kube.watch(
            self.resource,
            self.namespace,
            resource_version=self._rv,
            label_selector=self.label_selector,
            timeout_seconds=self.watch_timeout,
            metadata_only=self.metadata_only,
        ):
            kind = event.get("type")
            obj = event.get("object") or {}
            rv = obj.get("metadata", {}).get("resourceVersion")
            if kind == "BOOKMARK":
                if rv:
                    self._rv = rv
                continue
            obj = compact(self.transform(obj))
            key = key_of(obj)
            prev = self._cache.get(key)
            if kind == "DELETED":
                self._remove(key)
                self._emit("DELETED", obj, prev)
            elif kind in ("ADDED", "MODIFIED"):
                self._store(key, obj)
                self._emit("MODIFIED" if prev is not None else "ADDED", obj, prev)
            if rv:
                self._rv = rv

    async def _resync_loop(self) -> None:
        if self.resync_period <= 0:
            return
        while True:
            await asyncio.sleep(self.resync_period)
            for obj in list(self._cache.values()):
                self._emit("SYNC", obj, obj)

    # ----------------------------------------------------------------- cache
    def _store(self, key: str, obj: JSON) -> None:
        if key in self._cache:
            self._unindex(key)
        self._cache[key] = obj
        self._index(key, obj)

    def _remove(self, key: str) -> None:
        if key in self._cache:
            self._unindex(key)
            del self._cache[key]

    def _index(self, key: str, obj: JSON) -> None:
        for name, fn in self._indexers.items():
            for value in fn(obj):
                self._indexes[name].setdefault(value, set()).add(key)

    def _unindex(self, key: str) -> None:
        obj = self._cache[key]
        for name, fn in self._indexers.items():
            for value in fn(obj):
                keys = self._indexes[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indexes[name][value]

    def _emit(self, kind: str, obj: JSON, old: JSON | None) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj, old)
            except Exception:  # a bad handler must not stop the informer
                log.exception("%s: handler failed on %s", self.resource.plural, key_of(obj))


async def wait_synced(informers: Iterable[Informer], patience: float = 5.0) -> None:
    """Wait until every informer has listed once; past `patience` seconds, say (once, at
    INFO) which have not, so a missing CRD or permission is not a silent wait."""
    pending = list(informers)
    synced = asyncio.gather(*(inf.synced.wait() for inf in pending))
    try:
        await asyncio.wait_for(asyncio.shield(synced), patience)
    except TimeoutError:
        missing = [i.resource.plural for i in pending if not i.synced.is_set()]
        log.info("waiting for the caches of %s to sync", ", ".join(missing))
        await synced
    finally:
        synced.cancel()
