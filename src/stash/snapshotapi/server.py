"""Serving the Snapshot API: TLS that trusts the front proxy, and the APIService.

What it is for: `SnapshotApiServer` reads what the apiserver publishes for
request-header authentication (ConfigMap kube-system/extension-apiserver-authentication:
the front-proxy CA, the allowed client names, the user and group headers), serves
`snapshotapi.app` over HTTPS with the `ServingCert` it is given (the operator gives the
webhook's; alone it issues its own CA for `<service>.<namespace>.svc`), checks client
certificates of the front-proxy CA when offered, and registers the APIService
`v1alpha1.repositories.stash.appscode.com` for that Service with the CA as its caBundle
(or, when the chart owns the APIService, writes only the caBundle). `reload()` serves a
renewed certificate; `stop()` removes a registration it made.

Not for: the answers (`app`); where the certificate comes from and restarts
(`stash.snapshotserving`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiohttp import web

from stash import pki
from stash.kube.client import JSON, Kube, NotFound, Resource
from stash.kube.resources import CONFIGMAPS
from stash.snapshotapi import objects as O
from stash.snapshotapi.app import Auth, make_app

__all__ = ["APISERVICES", "NAME", "ServingCert", "SnapshotApiServer", "apiservice", "self_signed"]

log = logging.getLogger(__name__)

APISERVICES = Resource(
    "apiregistration.k8s.io", "v1", "apiservices", "APIService", namespaced=False
)
NAME = f"{O.VERSION}.{O.GROUP}"
_LIFETIME = dt.timedelta(days=365)


def apiservice(namespace: str, service: str, port: int, ca_bundle: bytes) -> JSON:
    """The APIService that sends the group's requests to the Service."""
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/managed-by": "stash"}},
        "spec": {
            "group": O.GROUP,
            "version": O.VERSION,
            "service": {"namespace": namespace, "name": service, "port": port},
            "caBundle": base64.b64encode(ca_bundle).decode(),
            "groupPriorityMinimum": 1000,
            "versionPriority": 15,
        },
    }


async def request_header_auth(kube: Kube) -> tuple[Auth, str]:
    """The request-header settings and the front-proxy CA (PEM) the apiserver publishes."""
    cm = await kube.get(CONFIGMAPS, "extension-apiserver-authentication", "kube-system")
    data = cm.get("data") or {}
    ca = data.get("requestheader-client-ca-file") or ""
    if not ca:
        raise RuntimeError(
            "the apiserver publishes no requestheader-client-ca-file: it needs "
            "--requestheader-client-ca-file for aggregated APIs"
        )

    def listed(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = data.get(key)
        return tuple(json.loads(raw)) if raw else default

    auth = Auth(
        allowed_names=listed("requestheader-allowed-names", ()),
        user_headers=listed("requestheader-username-headers", ("X-Remote-User",)),
        group_headers=listed("requestheader-group-headers", ("X-Remote-Group",)),
    )
    return auth, ca


@dataclass(frozen=True)
class ServingCert:
    """A serving certificate and key (PEM), and the CA bundle that verifies it."""

    cert: bytes
    key: bytes
    ca_bundle: bytes


def self_signed(namespace: str, service: str) -> ServingCert:
    """A fresh CA and a certificate it signed for `<service>.<namespace>.svc`."""
    now = dt.datetime.now(dt.UTC)
    ca = pki.issue_ca("stash-snapshot-api-ca", now, _LIFETIME)
    dns = f"{service}.{namespace}.svc"
    cert = pki.issue_serving_cert(ca, [dns, f"{dns}.cluster.local"], [], now, _LIFETIME)
    return ServingCert(cert.cert_pem, cert.key_pem, ca.cert_pem)


Registration = Literal["apiservice", "ca-bundle", "none"]
"""What `start` writes: the whole APIService, only its caBundle (the chart owns it), or
nothing (cert-manager injects the caBundle)."""


class SnapshotApiServer:
    """The Snapshot API on `host:port`, registered for `service` in `namespace`."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        service: str,
        service_port: int = 443,
        host: str = "0.0.0.0",
        port: int = 8444,
        restic_binary: str = "restic",
        certificate: ServingCert | None = None,
        registration: Registration = "apiservice",
    ) -> None:
        self.kube = kube
        self.namespace, self.service, self.service_port = namespace, service, service_port
        self.host, self.port = host, port
        self.restic_binary = restic_binary
        self.certificate = certificate or self_signed(namespace, service)
        self.registration = registration
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._runner: web.AppRunner | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="stash-snapshot-api-")

    def _load(self, certificate: ServingCert) -> None:
        crt, key = Path(self._dir.name, "tls.crt"), Path(self._dir.name, "tls.key")
        key.touch(mode=0o600)
        crt.write_bytes(certificate.cert)
        key.write_bytes(certificate.key)
        self._tls.load_cert_chain(crt, key)  # later handshakes use the new chain
        self.certificate = certificate

    async def start(self) -> None:
        """Serve, then register the APIService (or its caBundle)."""
        await self.serve()
        await self.register()

    async def serve(self) -> None:
        """Serve HTTPS on `host:port` (`port` is the bound one afterwards)."""
        auth, front_proxy_ca = await request_header_auth(self.kube)
        self._load(self.certificate)
        self._tls.load_verify_locations(cadata=front_proxy_ca)
        self._tls.verify_mode = ssl.CERT_OPTIONAL
        self._runner = web.AppRunner(make_app(self.kube, auth, self.restic_binary), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._tls)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("snapshot API serving on port %d as %s", self.port, NAME)

    async def register(self) -> None:
        """Write the APIService (or only its caBundle, or nothing: `registration`)."""
        ca_bundle = self.certificate.ca_bundle
        if self.registration == "none":
            return
        if self.registration == "ca-bundle":
            live = await self.kube.get(APISERVICES, NAME)
            encoded = base64.b64encode(ca_bundle).decode()
            if (live.get("spec") or {}).get("caBundle") != encoded:
                live["spec"]["caBundle"] = encoded
                await self.kube.replace(APISERVICES, live)
            return
        body = apiservice(self.namespace, self.service, self.service_port, ca_bundle)
        try:
            live = await self.kube.get(APISERVICES, NAME)
            body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            await self.kube.replace(APISERVICES, body)
        except NotFound:
            await self.kube.create(APISERVICES, body)

    async def reload(self, certificate: ServingCert) -> bool:
        """Serve `certificate` from now on (publishing a changed CA bundle first);
        True when it differs from the one served."""
        if certificate == self.certificate:
            return False
        old_bundle = self.certificate.ca_bundle
        self.certificate = certificate
        if certificate.ca_bundle != old_bundle:
            await self.register()
        self._load(certificate)
        return True

    async def stop(self, *, unregister: bool = True) -> None:
        """Stop serving; with `unregister` (and a managed APIService) delete it too."""
        if unregister and self.registration == "apiservice":
            await self.kube.delete(APISERVICES, NAME)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._dir.cleanup()
