"""The controller runner: a reconciler, its work queue, its workers and what feeds them.

A reconciler is one small object with `name` and `async reconcile(key) -> Result`
(controller-runtime's shape). Wiring is declarative: `watch(informer, mapper)` says
which keys an object change enqueues. The runner guarantees one worker per key at a
time (the queue does), requeues with backoff on error, honours `requeue_after`, and
reports to the caller's `ControllerMetrics` (plumbing names no metric family). Each
reconcile's log lines carry `<controller>/<key>` (`stash.logs`). Not for: business rules.

Most reconcilers act on one object of one kind: `as_reconciler()` adapts such an
`ObjectReconciler` (controller-runtime's `ObjectReconciler` / `AsReconciler`) to the
key-based runner. It reads the key from the cache, keeps the reconciler's finalizer,
runs the deletion branch and the parse into the reconciler's model, and hands the typed
object on; what happens when the object is gone, deleted or unparseable is the
reconciler's, through `ObjectHooks`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from stash.kube.client import JSON, Conflict, Kube, NotFound, Resource, key_of
from stash.kube.finalizers import ensure_finalizer, remove_finalizer
from stash.kube.informer import Informer
from stash.kube.workqueue import ShutDown, WorkQueue
from stash.logs import log_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for next: nothing, or another look after `requeue_after` s."""

    requeue_after: float | None = None


DONE = Result()


class Reconciler(Protocol):
    """One reconciler per kind: read desired and observed state, make one step."""

    name: str

    async def reconcile(self, key: str) -> Result: ...


class ControllerMetrics(Protocol):
    """What the runner reports; the application decides the metric families."""

    def reconciled(self, controller: str, seconds: float, failed: bool) -> None:
        """One reconcile of `controller` ran for `seconds` (and raised, if `failed`)."""
        ...

    def queue_depth(self, controller: str, depth: int) -> None:
        """`depth` keys wait in the work queue of `controller`."""
        ...


class _Unobserved:
    def reconciled(self, controller: str, seconds: float, failed: bool) -> None:
        pass

    def queue_depth(self, controller: str, depth: int) -> None:
        pass


Mapper = Callable[[JSON], Iterable[str]]
Predicate = Callable[[str, JSON, JSON | None], bool]


def spec_changed(kind: str, obj: JSON, old: JSON | None) -> bool:
    """Predicate: the object appeared, went, or its spec/metadata changed (status-only
    updates are ignored), like controller-runtime's GenerationChangedPredicate."""
    if kind in ("ADDED", "DELETED") or old is None:
        return True
    if obj.get("spec") != old.get("spec"):
        return True
    meta, old_meta = obj.get("metadata", {}), old.get("metadata", {})
    return any(
        meta.get(f) != old_meta.get(f)
        for f in ("deletionTimestamp", "labels", "annotations", "finalizers")
    )


def own_key(obj: JSON) -> list[str]:
    """Map an object to its own key (the `For(...)` of controller-runtime)."""
    return [key_of(obj)]


class Controller:
    """Runs `reconciler` with `workers` concurrent workers over one work queue."""

    def __init__(
        self,
        reconciler: Reconciler,
        *,
        workers: int = 2,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.name = reconciler.name
        self.queue = WorkQueue(reconciler.name)
        self.workers = workers
        self.metrics: ControllerMetrics = metrics or _Unobserved()

    def watch(
        self, informer: Informer, mapper: Mapper = own_key, when: Predicate | None = None
    ) -> None:
        """Enqueue `mapper(obj)` (and `mapper(old)`) for the changes the informer sees
        (only those `when` accepts, if given)."""

        def enqueue(kind: str, obj: JSON, old: JSON | None) -> None:
            if when is not None and kind != "SYNC" and not when(kind, obj, old):
                return
            keys = set(mapper(obj))
            if old is not None and old is not obj:
                keys.update(mapper(old))
            for key in keys:
                self.queue.add(key)

        informer.add_handler(enqueue)

    def reset(self) -> None:
        """A fresh queue (after leadership was lost: the next leader term starts clean)."""
        self.queue = WorkQueue(self.name)

    async def run(self) -> None:
        """Process keys until cancelled."""
        tasks = [
            asyncio.create_task(self._worker(), name=f"{self.name} worker {i}")
            for i in range(self.workers)
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            self.metrics.queue_depth(self.name, self.queue.depth)
            start = time.monotonic()
            failed = False
            log_as = f"{self.name}/{key}"  # every line of this reconcile carries it
            try:
                with log_key(log_as):
                    result = await self.reconciler.reconcile(key)
            except Exception as exc:  # requeue with backoff, never crash the operator
                failed = True
                delay = self.queue.add_rate_limited(key)
                log.warning(
                    "%s %s: reconcile failed, retrying in %.2fs: %s",
                    self.name,
                    key,
                    delay,
                    exc,
                    exc_info=not isinstance(exc, (Conflict, NotFound)),
                    extra={"key": log_as},
                )
            else:
                self.queue.forget(key)
                if result.requeue_after is not None:
                    self.queue.add_after(key, result.requeue_after)
            finally:
                self.metrics.reconciled(self.name, time.monotonic() - start, failed)
                self.queue.done(key)


# ---------------------------------------------------------------- object reconcilers
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ObjectHooks(Generic[M]):
    """What an object reconciler adds around its typed step; every hook is optional.

    The order for one key: not in the cache -> `gone(key)`; deletionTimestamp set ->
    `finalize(obj, model or None)`, then `finalizer` is removed; else `finalizer` is
    added, then the object is parsed: failure -> `invalid(obj, error)`, success -> the
    reconciler's `reconcile(model, obj)`.
    """

    finalizer: str | None = None
    """Kept on every live object; removed once `finalize` has run."""
    gone: Callable[[str], Awaitable[None]] | None = None
    """The cache no longer has the key (the object was deleted)."""
    finalize: Callable[[JSON, M | None], Awaitable[Result | None]] | None = None
    """The object is being deleted (its model is None when it does not parse). A Result
    asking for a requeue keeps the finalizer: the object is looked at again then."""
    invalid: Callable[[JSON, ValidationError], Awaitable[Result]] | None = None
    """The object does not parse into the model (None: leave it alone)."""


class ObjectReconciler(Protocol[M]):
    """A reconciler of one kind's objects: one step for one parsed object."""

    name: str
    model: type[M]
    hooks: ObjectHooks[M]

    async def reconcile(self, obj: M, raw: JSON, /) -> Result:
        """One step for `obj` (parsed from `raw`, the cached object as stored)."""
        ...


Parse = Callable[[type[M], JSON], M]


def _validate(model: type[M], raw: JSON) -> M:
    return model.model_validate(raw)


class _ObjectAdapter(Generic[M]):
    """A `Reconciler` (key in) running an `ObjectReconciler` (typed object in)."""

    def __init__(
        self,
        reconciler: ObjectReconciler[M],
        cache: Informer,
        kube: Kube,
        resource: Resource,
        parse: Parse[M],
    ) -> None:
        self.reconciler = reconciler
        self.name = reconciler.name
        self.cache = cache
        self.kube = kube
        self.resource = resource
        self.parse = parse

    async def reconcile(self, key: str) -> Result:
        hooks = self.reconciler.hooks
        raw = self.cache.get(key)
        if raw is None:
            if hooks.gone is not None:
                await hooks.gone(key)
            return DONE
        if raw["metadata"].get("deletionTimestamp"):
            if hooks.finalize is not None:
                try:
                    model: M | None = self.parse(self.reconciler.model, raw)
                except ValidationError:
                    model = None
                waiting = await hooks.finalize(raw, model)
                if waiting is not None and waiting.requeue_after is not None:
                    return waiting
            if hooks.finalizer is not None:
                await remove_finalizer(self.kube, self.resource, raw, hooks.finalizer)
            return DONE
        if hooks.finalizer is not None:
            raw = await ensure_finalizer(self.kube, self.resource, raw, hooks.finalizer)
        try:
            obj = self.parse(self.reconciler.model, raw)
        except ValidationError as exc:
            return await hooks.invalid(raw, exc) if hooks.invalid is not None else DONE
        return await self.reconciler.reconcile(obj, raw)


def as_reconciler(
    reconciler: ObjectReconciler[M],
    cache: Informer,
    kube: Kube,
    resource: Resource,
    parse: Parse[M] = _validate,
) -> Reconciler:
    """Run `reconciler` on the objects of `resource` that `cache` holds, by key.

    `parse` turns a cached object into the model (default `model.model_validate`; a
    caller may pass one that remembers the result per resourceVersion)."""
    return _ObjectAdapter(reconciler, cache, kube, resource, parse)
