"""Kubernetes Events (core/v1) about our objects, as `kubectl describe` shows them.

Repeats of the same (object, type, reason, message) within ten minutes bump the count
of the existing Event instead of creating another one, as client-go's recorder does.
An Event that cannot be written is logged, never raised: events are best-effort.

Every Event is also a log line (Warning at WARNING, Normal at INFO, with the object in
the message and the task's key, `stash.logs`), written by the same call, so what a user
sees in `kubectl describe` and in the logs cannot drift apart. `warn()` is the call
for a warning a user must see.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

from stash.kube.client import JSON, Kube, KubeError, Resource

log = logging.getLogger(__name__)

EVENTS = Resource("", "v1", "events", "Event")
NORMAL, WARNING = "Normal", "Warning"
_DEDUP_WINDOW = 600.0


class EventRecorder:
    """Records Events from one component (e.g. `stash-operator`)."""

    def __init__(self, kube: Kube, component: str, host: str = "") -> None:
        self.kube = kube
        self.component = component
        self.host = host
        self._recent: dict[tuple[str, str, str, str], tuple[str, int, float]] = {}

    async def warn(self, obj: JSON, reason: str, message: str) -> None:
        """Log a WARNING about `obj` and record it as a Warning Event."""
        await self.emit(obj, WARNING, reason, message)

    async def emit(self, obj: JSON, type_: str, reason: str, message: str) -> None:
        """Log, and record an Event about `obj` (any object with apiVersion/kind/metadata)."""
        meta = obj.get("metadata", {})
        log.log(
            logging.WARNING if type_ == WARNING else logging.INFO,
            "%s %s: %s: %s",
            obj.get("kind", "object"),
            "/".join(p for p in (meta.get("namespace"), meta.get("name")) if p),
            reason,
            message,
        )
        ns = meta.get("namespace") or "default"
        uid = str(meta.get("uid", ""))
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        key = (uid or f"{ns}/{meta.get('name')}", type_, reason, message)
        seen = self._recent.get(key)
        try:
            if seen is not None and time.monotonic() - seen[2] < _DEDUP_WINDOW:
                name, count, _ = seen
                await self.kube.patch(EVENTS, name, {"count": count + 1, "lastTimestamp": now}, ns)
                self._recent[key] = (name, count + 1, time.monotonic())
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
            self._recent[key] = (name, 1, time.monotonic())
            if len(self._recent) > 4096:
                self._recent.clear()
        except (KubeError, OSError) as exc:
            log.warning("could not record event %s on %s/%s: %s", reason, ns, meta.get("name"), exc)
