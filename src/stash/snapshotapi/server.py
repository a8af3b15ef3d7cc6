"""Serving the Snapshot API: TLS that trusts the front proxy, and the APIService.

What it is for: `SnapshotApiServer` reads what the apiserver publishes for
request-header authentication (ConfigMap kube-system/extension-apiserver-authentication:
the front-proxy CA, the allowed client names, the user and group headers), serves
`snapshotapi.app` over HTTPS with a certificate of its own CA for the Service
`<service>.<namespace>.svc` (client certificates of the front-proxy CA are checked when
offered), and registers the APIService `v1alpha1.repositories.stash.appscode.com` for
that Service with the CA as its caBundle; `stop()` removes the registration again.

Not for: the answers (`app`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import tempfile
from pathlib import Path

from aiohttp import web

from stash import pki
from stash.kube.client import JSON, Kube, NotFound, Resource
from stash.kube.resources import CONFIGMAPS
from stash.snapshotapi import objects as O
from stash.snapshotapi.app import Auth, make_app

__all__ = ["APISERVICES", "SnapshotApiServer", "apiservice"]

log = logging.getLogger(__name__)

APISERVICES = Resource(
    "apiregistration.k8s.io", "v1", "apiservices", "APIService", namespaced=False
)
NAME = f"{O.VERSION}.{O.GROUP}"
_LIFETIME = dt.timedelta(days=365)


def apiservice(namespace: str, service: str, port: int, ca_bundle: bytes) -> JSON:
    """The APIService that sends the group's requests to the Service."""
    import base64

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
    ) -> None:
        self.kube = kube
        self.namespace, self.service, self.service_port = namespace, service, service_port
        self.host, self.port = host, port
        self.restic_binary = restic_binary
        self._runner: web.AppRunner | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        """Serve, then register the APIService."""
        auth, front_proxy_ca = await request_header_auth(self.kube)
        now = dt.datetime.now(dt.UTC)
        ca = pki.issue_ca("stash-snapshot-api-ca", now, _LIFETIME)
        dns = f"{self.service}.{self.namespace}.svc"
        cert = pki.issue_serving_cert(ca, [dns, f"{dns}.cluster.local"], [], now, _LIFETIME)
        self._dir = tempfile.TemporaryDirectory(prefix="stash-snapshot-api-")
        d = Path(self._dir.name)
        (d / "tls.crt").write_bytes(cert.cert_pem)
        (d / "tls.key").write_bytes(cert.key_pem)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(d / "tls.crt", d / "tls.key")
        tls.load_verify_locations(cadata=front_proxy_ca)
        tls.verify_mode = ssl.CERT_OPTIONAL
        self._runner = web.AppRunner(make_app(self.kube, auth, self.restic_binary))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=tls)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        body = apiservice(self.namespace, self.service, self.service_port, ca.cert_pem)
        try:
            live = await self.kube.get(APISERVICES, NAME)
            body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            await self.kube.replace(APISERVICES, body)
        except NotFound:
            await self.kube.create(APISERVICES, body)
        log.info("snapshot API serving on %s:%d as %s", self.host, self.port, NAME)

    async def stop(self) -> None:
        """Unregister and stop serving."""
        await self.kube.delete(APISERVICES, NAME)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._dir is not None:
            self._dir.cleanup()
