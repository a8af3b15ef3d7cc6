"""Operator-level notifications (docs/hooks.md): session Failed / Succeeded, a stale
invoker, a repository whose integrity check failed — to a JSON webhook, a Slack incoming
webhook or an email address.

What it is for: `Notifier` (`dispatch`: fire-and-forget delivery with retries and
backoff; the configuration from a Secret via `secret_loader`), `Notification` and
`send` (`send`), the configuration model (`config`) and the stale-invoker rule
(`stale.overdue_period`).

Not for: deciding when a session ended (the controllers call `Notifier.notify`).
"""

from __future__ import annotations

from stash.notifications.config import EVENTS, NotificationConfig, NotificationConfigError
from stash.notifications.dispatch import CONFIG_KEY, Delivery, Notifier, secret_loader
from stash.notifications.send import Notification, SendFailed, send
from stash.notifications.stale import overdue_period

__all__ = [
    "CONFIG_KEY",
    "EVENTS",
    "Delivery",
    "Notification",
    "NotificationConfig",
    "NotificationConfigError",
    "Notifier",
    "SendFailed",
    "overdue_period",
    "secret_loader",
    "send",
]
