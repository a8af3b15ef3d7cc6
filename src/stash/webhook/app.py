"""The admission webhook as an aiohttp application: routes, error policy, health.

What it is for: `make_app(settings, lookup)` builds the application the server runs over
TLS (and tests run with aiohttp's test client). Every admission route reads an
AdmissionReview v1, asks a handler for a decision within a time budget shorter than the
apiserver's timeout, and answers:

* a body that is not an AdmissionReview v1 -> HTTP 400 with the reason;
* a mutating handler that fails or runs out of time -> allowed, no patch, a warning
  (a workload is never blocked because of us; the operator repairs injection later);
* a validating handler that fails -> denied with the reason (the rules could not run);
* otherwise the handler's answer; mutations as the JSON patch from the admitted to the
  mutated object (`stash.webhook.patch`).

Not for: TLS, registration or certificates (`stash.webhook.server`), or decisions
(`mutating`, `validating`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from stash.api import KINDS
from stash.contract.workloads import WORKLOAD_RESOURCES
from stash.settings import OperatorSettings
from stash.webhook.lookup import Lookup
from stash.webhook.mutating import (
    Mutation,
    mutate_backup_session,
    mutate_invoker,
    mutate_pod,
    mutate_restore_session,
    mutate_workload,
)
from stash.webhook.patch import json_patch
from stash.webhook.review import AdmissionRequest, BadReview, allowed, denied, parse_review
from stash.webhook.validating import validate_request

__all__ = [
    "AUTHORED",
    "MAX_BODY",
    "STATE",
    "WebhookState",
    "make_app",
    "mutate_path",
    "validate_path",
]

AUTHORED = ("backupconfigurations", "backupbatches", "restorebatches")
"""Invokers whose only mutation is the author record (RestoreSessions have their own
route, which also moves deprecated rules)."""

log = logging.getLogger(__name__)

MAX_BODY = 8 * 1024 * 1024
"""Largest AdmissionReview accepted: an object and its old version, each up to etcd's
1.5 MiB limit, with room for JSON overhead."""


@dataclass
class WebhookState:
    """What /readyz reports; the server flips `ready` once it is registered."""

    ready: bool = True


STATE = web.AppKey("stash-webhook-state", WebhookState)


def mutate_path(plural: str) -> str:
    """The URL path of the mutating route for a resource."""
    return f"/mutate/{plural}"


def validate_path(plural: str) -> str:
    """The URL path of the validating route for a resource."""
    return f"/validate/{plural}"


def _bad_request(reason: str) -> web.Response:
    body = {"kind": "Status", "status": "Failure", "code": 400, "reason": "BadRequest"}
    return web.json_response({**body, "message": reason}, status=400)


async def _read_review(request: web.Request) -> AdmissionRequest | web.Response:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _bad_request(f"body is larger than {MAX_BODY} bytes")
    try:
        return parse_review(body, request.content_type)
    except BadReview as exc:
        return _bad_request(str(exc))


def _describe(req: AdmissionRequest) -> str:
    return f"{req.operation} {req.kind.kind} {req.namespace}/{req.name or '<generated>'}"


def _budget(settings: OperatorSettings) -> float:
    # Answer before the apiserver gives up on us, so a slow lookup becomes our decision
    # (allow without patch / deny with a reason) instead of the apiserver's timeout.
    return max(0.5, settings.webhook_timeout_seconds - 1.0)


MutateFn = Callable[[AdmissionRequest], Awaitable[Mutation]]


def _mutating(
    settings: OperatorSettings, decide: MutateFn
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        req = await _read_review(request)
        if isinstance(req, web.Response):
            return req
        try:
            async with asyncio.timeout(_budget(settings)):
                result = await decide(req)
            patch = json_patch(result.original, result.mutated)
            review = allowed(req.uid, patch, result.warnings)
        except Exception as exc:
            reason = (
                "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            )
            log.warning("mutating %s failed, admitting unchanged: %s", _describe(req), reason)
            review = allowed(req.uid, None, [f"stash: object admitted without mutation: {reason}"])
        return web.json_response(review)

    return handle


def _validating(
    settings: OperatorSettings, lookup: Lookup
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        req = await _read_review(request)
        if isinstance(req, web.Response):
            return req
        try:
            async with asyncio.timeout(_budget(settings)):
                verdict = await validate_request(req, lookup)
        except Exception as exc:
            reason = (
                "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            )
            log.warning("validating %s failed, denying: %s", _describe(req), reason)
            return web.json_response(
                denied(req.uid, f"stash could not validate this object ({reason}); retry", 500)
            )
        if verdict.ok:
            return web.json_response(allowed(req.uid, None, verdict.warnings))
        return web.json_response(denied(req.uid, verdict.message, 422, verdict.warnings))

    return handle


def make_app(settings: OperatorSettings, lookup: Lookup) -> web.Application:
    """The webhook application: admission routes plus /healthz and /readyz."""
    app = web.Application(client_max_size=MAX_BODY)
    state = app[STATE] = WebhookState()

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return (
            web.Response(text="ok") if state.ready else web.Response(status=503, text="not ready")
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

    async def workload(req: AdmissionRequest) -> Mutation:
        return await mutate_workload(req, settings, lookup)

    async def pod(req: AdmissionRequest) -> Mutation:
        return await mutate_pod(req, settings, lookup)

    async def restore_session(req: AdmissionRequest) -> Mutation:
        return mutate_restore_session(req)

    async def invoker(req: AdmissionRequest) -> Mutation:
        return mutate_invoker(req)

    async def backup_session(req: AdmissionRequest) -> Mutation:
        return await mutate_backup_session(req, lookup)

    for plural in WORKLOAD_RESOURCES:
        app.router.add_post(mutate_path(plural), _mutating(settings, workload))
    app.router.add_post(mutate_path("pods"), _mutating(settings, pod))
    app.router.add_post(mutate_path("restoresessions"), _mutating(settings, restore_session))
    app.router.add_post(mutate_path("backupsessions"), _mutating(settings, backup_session))
    for plural in AUTHORED:
        app.router.add_post(mutate_path(plural), _mutating(settings, invoker))
    validate = _validating(settings, lookup)
    for info in KINDS.values():
        app.router.add_post(validate_path(info.plural), validate)
    return app
