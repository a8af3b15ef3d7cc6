"""The Stash admission webhook: inject the agent into workloads, default and validate Stash
objects (stash-api.md §4, §1.1-§1.5, §11.1).

What it is for: `serve_webhook(settings, kube)` / `WebhookServer` — HTTPS with a
self-managed, rotating certificate (`certs`), registered with the apiserver
(`registration`) — around `make_app(settings, lookup)`, the aiohttp application, and the
parts it is made of: AdmissionReview decoding (`review`), the cluster reads it needs
(`lookup`), mutating and validating decisions (`mutating`, `validating`, `defaults`) and
the JSON patch (`patch`).

Not for: the injection and validation rules themselves (`stash.inject`,
`stash.validation`), which the operator's reconcilers share.
"""

from __future__ import annotations

from stash.webhook.app import make_app
from stash.webhook.lookup import ApiLookup, Lookup, StaticLookup
from stash.webhook.server import WebhookServer, serve_webhook

__all__ = ["ApiLookup", "Lookup", "StaticLookup", "WebhookServer", "make_app", "serve_webhook"]
