"""The admission webhook of one operator replica: `OperatorWebhook.run()` serves it (on
every replica, retried until it starts: a replica whose webhook is not serving is not
ready, so the Service skips it); `keep_registered()` is leader work that registers a
deleted webhook configuration again (else it would stay deleted until a replica
restarts).

Not for: admission decisions, TLS or registration details (`stash.webhook`), or the
Snapshot API (`stash.snapshotserving`, which shares this replica's certificate store).
"""

from __future__ import annotations

import asyncio
import logging

from stash.kube.client import Kube, KubeError
from stash.settings import OperatorSettings
from stash.webhook.certs import CertStore
from stash.webhook.server import WebhookServer

__all__ = ["OperatorWebhook"]

log = logging.getLogger(__name__)


class OperatorWebhook:
    """The admission webhook of one operator replica; `server` is set while it serves."""

    def __init__(self, kube: Kube, settings: OperatorSettings, store: CertStore) -> None:
        self.kube = kube
        self.settings = settings
        self.store = store
        self.server: WebhookServer | None = None

    async def run(self) -> None:
        """Serve until cancelled; start again with backoff while starting fails."""
        delay = 2.0
        while True:
            webhook = WebhookServer(self.settings, self.kube, store=self.store)
            try:
                await webhook.start()
                break
            except (KubeError, OSError, RuntimeError) as exc:
                await webhook.stop(unregister_webhooks=False)
                log.error("the admission webhook did not start: %s; retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        self.server = webhook
        try:
            await asyncio.Event().wait()
        finally:
            self.server = None
            await asyncio.shield(webhook.stop())

    async def keep_registered(self) -> None:
        """Leader work: every `webhook_recheck_interval` seconds, register a deleted
        webhook configuration again."""
        while True:
            await asyncio.sleep(self.settings.webhook_recheck_interval)
            if self.server is None:
                continue
            try:
                gone = await self.server.reregister_missing()
            except Exception:  # the next look tries again
                log.exception("checking the webhook configurations failed; trying again later")
                continue
            for kind in gone:
                log.warning(
                    "%s %s was deleted; registered it again",
                    kind,
                    self.settings.webhook_config_name,
                )
