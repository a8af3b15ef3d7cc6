"""Fire-and-forget delivery of notifications to every notifier that wants them.

What it is for: `Notifier`, which the operator holds: `notify(notification)` returns at
once and delivers in the background to each configured notifier whose `events` list the
notification's event, retrying a failed send with exponential backoff (and jitter) up to
`retry.attempts` times; the last failure is logged at ERROR with the notifier's name and
the reason. A notifier that is down, slow or misconfigured never delays or changes what
the caller does (a session's phase is written before it is notified about).
`deliver()` is the same, awaited (it never raises either).

The configuration comes from a loader (`secret_loader`: the `notifiers.yaml` key of a
Secret in the operator's namespace) and is re-read at most every `reload_every` seconds,
so an edited Secret applies without a restart.

Not for: sending one message (`send`) or deciding what to notify (the operator).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stash.kube.client import Kube, KubeError, NotFound
from stash.kube.resources import SECRETS
from stash.notifications.config import NotificationConfig, NotificationConfigError, NotifierSpec
from stash.notifications.send import Notification, SendFailed, send

__all__ = ["CONFIG_KEY", "Delivery", "Notifier", "secret_loader"]

log = logging.getLogger(__name__)

CONFIG_KEY = "notifiers.yaml"
Loader = Callable[[], Awaitable[NotificationConfig | None]]


@dataclass(frozen=True)
class Delivery:
    """How sending one notification to one notifier went."""

    notifier: str
    ok: bool
    attempts: int
    error: str = ""


def secret_loader(kube: Kube, namespace: str, name: str) -> Loader:
    """A loader reading `notifiers.yaml` from Secret `namespace/name` (None: no notifiers)."""
    said: list[str] = []

    async def load() -> NotificationConfig | None:
        try:
            secret = await kube.get(SECRETS, name, namespace)
        except NotFound:
            problem = f"Secret {namespace}/{name} does not exist: no notifications are sent"
            if problem not in said:
                log.warning("%s", problem)
                said[:] = [problem]
            return None
        raw = (secret.get("data") or {}).get(CONFIG_KEY)
        if raw is None:
            log.warning("Secret %s/%s has no key %s: no notifications", namespace, name, CONFIG_KEY)
            return None
        try:
            return NotificationConfig.parse(base64.b64decode(raw).decode())
        except NotificationConfigError as exc:
            if str(exc) not in said:
                log.error("Secret %s/%s: %s; no notifications are sent", namespace, name, exc)
                said[:] = [str(exc)]
            return None

    return load


class Notifier:
    """The operator's notifiers (module docstring)."""

    def __init__(
        self,
        load: Loader,
        *,
        reload_every: float = 60.0,
        send_timeout: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._load = load
        self._reload_every = reload_every
        self._send_timeout = send_timeout
        self._sleep = sleep
        self._config: NotificationConfig | None = None
        self._loaded_at: float | None = None
        self._tasks: set[asyncio.Task[list[Delivery]]] = set()

    async def config(self) -> NotificationConfig:
        """The current configuration (re-read when older than `reload_every`)."""
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self._reload_every:
            try:
                self._config = await self._load()
            except (KubeError, OSError) as exc:
                log.warning("cannot read the notifiers' configuration: %s", exc)
            self._loaded_at = now
        return self._config or NotificationConfig()

    def notify(self, notification: Notification) -> None:
        """Deliver in the background; returns at once, never raises."""
        task = asyncio.create_task(self.deliver(notification), name=f"notify {notification.event}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, notification: Notification) -> list[Delivery]:
        """Send to every notifier that wants the event, with retries; never raises."""
        try:
            config = await self.config()
            wanted = [n for n in config.notifiers if n.wants(notification.event)]
            if not wanted:
                return []
            return list(await asyncio.gather(*(self._one(n, notification, config) for n in wanted)))
        except Exception:  # a notifier must never break its caller
            log.exception("notifying %s failed unexpectedly", notification.event)
            return []

    async def _one(
        self, spec: NotifierSpec, notification: Notification, config: NotificationConfig
    ) -> Delivery:
        retry = config.retry
        error = ""
        for attempt in range(1, retry.attempts + 1):
            try:
                await send(spec, notification, self._send_timeout)
            except SendFailed as exc:
                error = str(exc)
            else:
                log.info(
                    "notified %s of %s %s/%s (%s)",
                    spec.name,
                    notification.kind,
                    notification.namespace,
                    notification.name,
                    notification.event,
                )
                return Delivery(spec.name, True, attempt)
            if attempt < retry.attempts:
                delay = min(retry.initial_delay * 2 ** (attempt - 1), retry.max_delay)
                log.warning(
                    "notifier %s: attempt %d failed (%s); retrying in %.1fs",
                    spec.name,
                    attempt,
                    error,
                    delay,
                )
                await self._sleep(delay * random.uniform(0.8, 1.2))
        log.error(
            "notifier %s: gave up on %s of %s %s/%s after %d attempts: %s",
            spec.name,
            notification.event,
            notification.kind,
            notification.namespace,
            notification.name,
            retry.attempts,
            error,
        )
        return Delivery(spec.name, False, retry.attempts, error)

    async def close(self, grace: float = 5.0) -> None:
        """Let pending deliveries finish for up to `grace` seconds, then cancel them."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
