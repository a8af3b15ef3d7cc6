"""Running the webhook: TLS with a self-managed certificate, registration, rotation.

What it is for: `WebhookServer` — start (certificate from the store, HTTPS site,
Mutating/ValidatingWebhookConfigurations with our caBundle), keep the certificate fresh
(checked hourly; a rotated CA is published in the caBundle before the new certificate is
served), register a deleted configuration again (`reregister_missing`), stop — and
`serve_webhook(settings, kube)`, the coroutine `stash operator` and `stash webhook` run
in their event loop.

With `webhook_cert_dir` the certificate comes from mounted files (cert-manager) and is
re-read every minute; the configurations are then left to their owner (the chart, with
cert-manager injecting the caBundle). With `webhook_manage_configurations` off (the
chart owns the configurations) only their caBundle is written.

In the cluster the registrations point at the operator Service and the bundle lives in a
Secret shared by the replicas; with a specific `webhook_host` (e.g. 127.0.0.1, for a local
run against a remote apiserver) they point at `https://<host>:<port>`, the certificate
is kept in memory and the registrations are removed again on exit.

Not for: the admission decisions (`stash.webhook.app`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from stash.kube.client import JSON, Kube
from stash.kube.tasks import cancel_and_wait
from stash.settings import OperatorSettings
from stash.webhook.app import STATE, make_app
from stash.webhook.certs import (
    CA_LIFETIME,
    CERT_LIFETIME,
    CertBundle,
    CertStore,
    MemoryCertStore,
    SecretCertStore,
    plan,
)
from stash.webhook.lookup import ApiLookup, Lookup
from stash.webhook.registration import (
    configurations,
    missing,
    publish_ca_bundle,
    register,
    unregister,
)

__all__ = ["WebhookServer", "cert_store", "serve_webhook", "serving_bundle"]

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _read_cert_dir(directory: Path) -> CertBundle:
    """The serving certificate mounted at `directory` (`tls.crt`, `tls.key`, `ca.crt`)."""
    try:
        cert = (directory / "tls.crt").read_bytes()
        key = (directory / "tls.key").read_bytes()
    except OSError as exc:
        raise RuntimeError(
            f"webhook certificate directory {directory}: {exc.strerror or exc} "
            "(mount a kubernetes.io/tls Secret there, or leave --webhook-cert-dir unset)"
        ) from None
    ca = directory / "ca.crt"
    return CertBundle(
        ca_cert=ca.read_bytes() if ca.exists() else b"", ca_key=b"", cert=cert, key=key
    )


def _names(settings: OperatorSettings) -> tuple[list[str], list[str]]:
    """(DNS names, IPs) the serving certificate must cover."""
    dns, ips = settings.service_dns_names(), []
    if settings.webhook_url_base:
        try:
            ips.append(str(ipaddress.ip_address(settings.webhook_host)))
        except ValueError:
            dns.append(settings.webhook_host)
    return dns, ips


def cert_store(settings: OperatorSettings, kube: Kube) -> CertStore:
    """Where the serving certificate is kept: memory for a local run (a specific
    `webhook_host`), else the Secret the replicas share."""
    if settings.webhook_url_base is not None:
        return MemoryCertStore()
    return SecretCertStore(kube, settings.namespace, settings.webhook_tls_secret)


async def serving_bundle(
    settings: OperatorSettings,
    store: CertStore,
    now: dt.datetime,
    *,
    ca_lifetime: dt.timedelta = CA_LIFETIME,
    cert_lifetime: dt.timedelta = CERT_LIFETIME,
) -> CertBundle:
    """The certificate to serve now: the mounted one (`webhook_cert_dir`), else the
    stored one, renewed (and stored) when due. The Snapshot API serves the same one."""
    if settings.webhook_cert_dir:
        return await asyncio.to_thread(_read_cert_dir, Path(settings.webhook_cert_dir))
    stored = await store.load()
    dns, ips = _names(settings)
    wanted = plan(stored, dns, ips, now, ca_lifetime=ca_lifetime, cert_lifetime=cert_lifetime)
    if wanted is not stored:
        wanted = await store.save(wanted)
    return wanted


class WebhookServer:
    """The webhook over HTTPS, registered with the apiserver, its certificate kept fresh."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: Kube,
        *,
        lookup: Lookup | None = None,
        store: CertStore | None = None,
        namespace_selector: JSON | None = None,
        clock: Clock = _now,
        check_interval: float = 3600.0,
        propagation_delay: float = 10.0,
        ca_lifetime: dt.timedelta = CA_LIFETIME,
        cert_lifetime: dt.timedelta = CERT_LIFETIME,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.lookup = lookup or ApiLookup(kube)
        self.store = store or cert_store(settings, kube)
        self.namespace_selector = namespace_selector
        self.clock = clock
        # A mounted certificate is renewed by someone else (cert-manager): look often.
        self.check_interval = (
            min(check_interval, 60.0) if settings.webhook_cert_dir else check_interval
        )
        self.propagation_delay = propagation_delay
        self.lifetimes = {"ca_lifetime": ca_lifetime, "cert_lifetime": cert_lifetime}
        self.registered = False
        """The configurations were registered once (start); kept registered after."""
        self.bundle: CertBundle | None = None
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tmp = tempfile.TemporaryDirectory(prefix="stash-webhook-")
        self._runner: web.AppRunner | None = None
        self._rotation: asyncio.Task[None] | None = None
        self._app = make_app(settings, self.lookup)

    @property
    def port(self) -> int:
        """The port the server listens on (useful when settings asked for port 0)."""
        return self.settings.webhook_port

    @property
    def url_base(self) -> str | None:
        """`https://host:port` in local mode, None when reached through the Service."""
        return self.settings.webhook_url_base

    def _load_certificate(self, bundle: CertBundle) -> None:
        crt, key = Path(self._tmp.name, "tls.crt"), Path(self._tmp.name, "tls.key")
        key.touch(mode=0o600)
        crt.write_bytes(bundle.cert)
        key.write_bytes(bundle.key)
        # Later handshakes use the new chain; open connections keep theirs.
        self._ssl.load_cert_chain(crt, key)
        self.bundle = bundle

    async def _current_bundle(self) -> CertBundle:
        return await serving_bundle(self.settings, self.store, self.clock(), **self.lifetimes)

    async def start(self) -> None:
        """Load or issue the certificate, serve HTTPS, register the webhooks."""
        self._app[STATE].ready = False
        self._load_certificate(await self._current_bundle())
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        host = self.settings.webhook_host or None
        site = web.TCPSite(self._runner, host, self.settings.webhook_port, ssl_context=self._ssl)
        await site.start()
        port = int(self._runner.addresses[0][1])
        if port != self.settings.webhook_port:
            self.settings = self.settings.model_copy(update={"webhook_port": port})
        await self._register()
        self.registered = True
        self._app[STATE].ready = True
        self._rotation = asyncio.create_task(self._rotate_forever(), name="webhook-cert-rotation")
        log.info("admission webhook serving on port %d (%s)", port, self.url_base or "service")

    def _configurations(self) -> tuple[JSON | None, JSON | None]:
        assert self.bundle is not None
        return configurations(
            self.settings,
            self.bundle.ca_bundle,
            url_base=self.url_base,
            namespace_selector=self.namespace_selector,
        )

    async def _register(self) -> None:
        assert self.bundle is not None
        if self.settings.webhook_cert_dir:
            return  # cert-manager (or the chart) writes the caBundle; the chart owns them
        if not self.settings.webhook_manage_configurations:
            await publish_ca_bundle(self.kube, self.settings, self.bundle.ca_bundle)
            return
        mutating, validating = self._configurations()
        await register(self.kube, mutating, validating, self.settings)

    async def reregister_missing(self) -> list[str]:
        """Register the configurations again when one we manage was deleted; the kinds
        that were missing (the operator's leader calls this periodically)."""
        if self.bundle is None or not self.registered:
            return []
        if self.settings.webhook_cert_dir or not self.settings.webhook_manage_configurations:
            return []  # their owner (the chart) keeps them
        mutating, validating = self._configurations()
        gone = await missing(self.kube, mutating, validating)
        if gone:
            await register(self.kube, mutating, validating, self.settings)
        return gone

    async def rotate(self) -> bool:
        """Check the certificate once; return True when a new one is being served."""
        assert self.bundle is not None
        current = await self._current_bundle()
        if current == self.bundle:
            return False
        if current.ca_bundle != self.bundle.ca_bundle and not self.settings.webhook_cert_dir:
            await publish_ca_bundle(self.kube, self.settings, current.ca_bundle)
            if current.ca_cert != self.bundle.ca_cert:
                # Let every apiserver see the new CA before a certificate it signed is served.
                await asyncio.sleep(self.propagation_delay)
        self._load_certificate(current)
        log.info("admission webhook certificate rotated")
        return True

    async def _rotate_forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            try:
                await self.rotate()
            except Exception:
                log.exception("webhook certificate check failed; retrying later")

    async def stop(self, *, unregister_webhooks: bool | None = None) -> None:
        """Stop serving. Local runs also remove their registrations (unless told not to)."""
        if self._rotation is not None:
            await cancel_and_wait(self._rotation)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if unregister_webhooks if unregister_webhooks is not None else self.url_base is not None:
            await unregister(self.kube, self.settings)
        self._tmp.cleanup()


async def serve_webhook(
    settings: OperatorSettings, kube: Kube, lookup: Lookup | None = None
) -> None:
    """Run the webhook until cancelled (the `stash operator` / `stash webhook` coroutine)."""
    server = WebhookServer(settings, kube, lookup=lookup)
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(server.stop())
