"""Kubernetes Events (core/v1) about our objects, as `kubectl describe` shows them.

Repeats of the same (object, type, reason, message) within ten minutes bump the count
of the existing Event instead of creating another one, as client-go's recorder does.
An Event that cannot be written is logged, never raised: events are best-effort.

Every Event is also a log line (Warning at WARNING, Normal at INFO, with the object in
the message and the task's key, `stash.logs`), written by the same call, so what a user
sees in `kubectl describe` and in the logs cannot drift apart. `warn()` is the call
for a warning a user must see. `emit_soon()` records in the background, for Events in
bursts that must not hold up the reconcile that emits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable

from stash.kube.client import JSON, Kube, KubeError, Resource

log = logging.getLogger(__name__)

EVENTS = Resource("", "v1", "events", "Event")
NORMAL, WARNING = "Normal", "Warning"
_DEDUP_WINDOW = 600.0
#: Repeats remembered at most; past it the least recently seen is forgotten first.
MAX_REMEMBERED = 4096
#: Events `emit_soon` keeps waiting at most (about 300 bytes each).
MAX_PENDING = 20000


class EventRecorder:
    """Records Events from one component (e.g. `stash-operator`)."""

    def __init__(
        self,
        kube: Kube,
        component: str,
        host: str = "",
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.component = component
        self.host = host
        self._clock = clock
        self._recent: dict[tuple[str, str, str, str], tuple[str, int, float]] = {}
        self._pending: deque[tuple[JSON, str, str, str]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._dropping = False

    async def warn(self, obj: JSON, reason: str, message: str) -> None:
        """Log a WARNING about `obj` and record it as a Warning Event."""
        await self.emit(obj, WARNING, reason, message)

    async def emit(self, obj: JSON, type_: str, reason: str, message: str) -> None:
        """Log, and record an Event about `obj` (any object with apiVersion/kind/metadata)."""
        self._log(obj, type_, reason, message)
        await self._record(obj, type_, reason, message)

    def emit_soon(self, obj: JSON, type_: str, reason: str, message: str) -> None:
        """Log now, and record the Event in the background: one write at a time, in
        order, after those before it (client-go's recorder sends so). For Events that
        come in bursts and must not hold up what emits them (ten thousand invokers
        reaching Ready at once); past `MAX_PENDING` waiting, an Event is dropped (said
        once per burst). `close` sends what waits."""
        self._log(obj, type_, reason, message)
        if len(self._pending) >= MAX_PENDING:
            if not self._dropping:
                log.warning("more than %d Events wait to be recorded: dropping", MAX_PENDING)
            self._dropping = True
            return
        meta = obj.get("metadata", {})
        about = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid", "resourceVersion")},
        }
        self._pending.append((about, type_, reason, message))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_pending(), name="events")

    async def close(self, timeout: float = 5.0) -> None:
        """Record the Events `emit_soon` left waiting (for up to `timeout` seconds)."""
        if self._sender is not None and not self._sender.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._sender), timeout)
            self._sender.cancel()

    async def _send_pending(self) -> None:
        while self._pending:
            about, type_, reason, message = self._pending.popleft()
            try:
                await self._record(about, type_, reason, message)
            except Exception as exc:  # a lost connection: this one is lost, not the rest
                log.warning("could not record event %s: %s", reason, exc)
        self._dropping = False

    def _log(self, obj: JSON, type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        log.log(
            logging.WARNING if type_ == WARNING else logging.INFO,
            "%s %s: %s: %s",
            obj.get("kind", "object"),
            "/".join(p for p in (meta.get("namespace"), meta.get("name")) if p),
            reason,
            message,
        )

    def _remember(self, key: tuple[str, str, str, str], name: str, count: int) -> None:
        """Keep `key`'s Event for repeats within the window, most recently seen last;
        forget those the window has passed (an operator up for months keeps only the
        last ten minutes' Events, not every session's)."""
        now = self._clock()
        self._recent.pop(key, None)
        self._recent[key] = (name, count, now)
        recent = self._recent
        while recent:
            oldest = next(iter(recent))
            if now - recent[oldest][2] < _DEDUP_WINDOW and len(recent) <= MAX_REMEMBERED:
                break
            del recent[oldest]

    async def _record(self, obj: JSON, type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        ns = meta.get("namespace") or "default"
        uid = str(meta.get("uid", ""))
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = (uid or f"{ns}/{meta.get('name')}", type_, reason, message)
        seen = self._recent.get(key)
        try:
            if seen is not None and self._clock() - seen[2] < _DEDUP_WINDOW:
                name, count, _ = seen
                await self.kube.patch(EVENTS, name, {"count": count + 1, "lastTimestamp": now}, ns)
                self._remember(key, name, count + 1)
                return
            name = f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:16]}"
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": meta.get("name"),
                    "namespace": meta.get("namespace"),
                    "uid": uid or None,
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "type": type_,
                "reason": reason,
                "message": message[:1024],
                "source": {"component": self.component, "host": self.host or None},
                "reportingComponent": self.component,
                "reportingInstance": self.host or self.component,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            await self.kube.create(EVENTS, event, ns)
            self._remember(key, name, 1)
        except (KubeError, OSError) as exc:
            log.warning("could not record event %s on %s/%s: %s", reason, ns, meta.get("name"), exc)
