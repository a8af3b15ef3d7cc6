"""The webhook's own CA and serving certificate: issue, check, rotate, store.

What it is for: a self-managed CA (10 years) signs the serving certificate (1 year) whose
SANs are every name the apiserver may dial (the operator Service's DNS names, and the
host given for out-of-cluster runs). `plan(bundle, names, now)` says what the bundle
should be: unchanged, a new serving certificate (at 2/3 of its lifetime, or when the
names changed), or a new CA (at 2/3 of the CA's lifetime) — the old CA then stays in the
published bundle until it expires, so certificates it signed stay trusted while the new
bundle reaches the apiservers. Bundles live in a `CertStore`: a Secret in the cluster,
or memory for a local run.

Not for: serving TLS or publishing caBundles (`stash.webhook.server`,
`stash.webhook.registration`), or the X.509 issuing itself (`stash.pki`).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from cryptography import x509

from stash import pki
from stash.kube.client import Conflict, Kube, NotFound, Resource

__all__ = [
    "CA_LIFETIME",
    "CERT_LIFETIME",
    "CertBundle",
    "CertStore",
    "MemoryCertStore",
    "SecretCertStore",
    "plan",
    "rotation_due",
    "sans_of",
]

CA_LIFETIME = dt.timedelta(days=3650)
CERT_LIFETIME = dt.timedelta(days=365)
ROTATE_AT = 2 / 3
"""Fraction of a certificate's lifetime after which it is replaced."""


@dataclass(frozen=True)
class CertBundle:
    """A CA, the serving certificate it signed, and an older CA still trusted (if any)."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes
    previous_ca: bytes = b""

    @property
    def ca_bundle(self) -> bytes:
        """What the webhook configurations' caBundle must hold."""
        return self.ca_cert + self.previous_ca


def _issue_ca(now: dt.datetime, lifetime: dt.timedelta) -> tuple[bytes, bytes]:
    ca = pki.issue_ca(f"stash-webhook-ca@{int(now.timestamp())}", now, lifetime)
    return ca.cert_pem, ca.key_pem


def _issue_serving(
    ca_cert: bytes,
    ca_key: bytes,
    dns_names: Sequence[str],
    ips: Sequence[str],
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> tuple[bytes, bytes]:
    pair = pki.issue_serving_cert(pki.KeyPair(ca_cert, ca_key), dns_names, ips, now, lifetime)
    return pair.cert_pem, pair.key_pem


def rotation_due(cert_pem: bytes, now: dt.datetime, fraction: float = ROTATE_AT) -> bool:
    """True once `fraction` of the certificate's lifetime has passed (or it is unreadable)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return True
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * fraction


def sans_of(cert_pem: bytes) -> tuple[frozenset[str], frozenset[str]]:
    """(DNS names, IP addresses) a certificate is valid for."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(), frozenset()
    ips = frozenset(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return frozenset(san.get_values_for_type(x509.DNSName)), ips


def _expired(cert_pem: bytes, now: dt.datetime) -> bool:
    try:
        return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc <= now
    except ValueError:
        return True


def plan(
    bundle: CertBundle | None,
    dns_names: Sequence[str],
    ips: Sequence[str],
    now: dt.datetime,
    *,
    ca_lifetime: dt.timedelta = CA_LIFETIME,
    cert_lifetime: dt.timedelta = CERT_LIFETIME,
) -> CertBundle:
    """The bundle as it should be at `now`; `bundle` itself when nothing is due."""
    if bundle is None:
        ca_cert, ca_key = _issue_ca(now, ca_lifetime)
        cert, key = _issue_serving(ca_cert, ca_key, dns_names, ips, now, cert_lifetime)
        return CertBundle(ca_cert, ca_key, cert, key)
    out = bundle
    if out.previous_ca and _expired(out.previous_ca, now):
        out = replace(out, previous_ca=b"")
    new_ca = rotation_due(out.ca_cert, now)
    if new_ca:
        ca_cert, ca_key = _issue_ca(now, ca_lifetime)
        out = replace(out, ca_cert=ca_cert, ca_key=ca_key, previous_ca=out.ca_cert)
    try:
        covers = sans_of(out.cert) == (frozenset(dns_names), frozenset(ips))
    except ValueError:
        covers = False
    if new_ca or not covers or rotation_due(out.cert, now):
        cert, key = _issue_serving(out.ca_cert, out.ca_key, dns_names, ips, now, cert_lifetime)
        out = replace(out, cert=cert, key=key)
    return out


class CertStore(Protocol):
    """Where the bundle is kept between restarts and shared between replicas."""

    async def load(self) -> CertBundle | None:
        """The stored bundle, None when there is none yet."""
        ...

    async def save(self, bundle: CertBundle) -> CertBundle:
        """Store `bundle`; return what is stored (another replica's, if it won a race)."""
        ...


class MemoryCertStore:
    """A `CertStore` for one process (out-of-cluster runs, tests)."""

    def __init__(self, bundle: CertBundle | None = None) -> None:
        self.bundle = bundle

    async def load(self) -> CertBundle | None:
        """The stored bundle, None when there is none yet."""
        return self.bundle

    async def save(self, bundle: CertBundle) -> CertBundle:
        """Store `bundle`."""
        self.bundle = bundle
        return bundle


_SECRETS = Resource("", "v1", "secrets", "Secret")
_FIELDS = {
    "tls.crt": "cert",
    "tls.key": "key",
    "ca.crt": "ca_cert",
    "ca.key": "ca_key",
    "ca-previous.crt": "previous_ca",
}


class SecretCertStore:
    """A `CertStore` in a `kubernetes.io/tls` Secret, with optimistic concurrency."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self._resource_version: str | None = None

    async def load(self) -> CertBundle | None:
        """The stored bundle, None when the Secret does not exist or is incomplete."""
        try:
            secret = await self.kube.get(_SECRETS, self.name, self.namespace)
        except NotFound:
            self._resource_version = None
            return None
        self._resource_version = secret["metadata"].get("resourceVersion")
        data = secret.get("data") or {}
        values = {attr: base64.b64decode(data.get(key, "")) for key, attr in _FIELDS.items()}
        if not all(values[a] for a in ("cert", "key", "ca_cert", "ca_key")):
            return None
        return CertBundle(**values)

    async def save(self, bundle: CertBundle) -> CertBundle:
        """Create or update the Secret; on a lost race return the winner's bundle."""
        data = {
            key: base64.b64encode(getattr(bundle, attr)).decode() for key, attr in _FIELDS.items()
        }
        secret: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    "app.kubernetes.io/name": "stash",
                    "app.kubernetes.io/component": "webhook",
                },
            },
            "data": data,
        }
        try:
            if self._resource_version is None:
                stored = await self.kube.create(_SECRETS, secret, self.namespace)
            else:
                secret["metadata"]["resourceVersion"] = self._resource_version
                stored = await self.kube.replace(_SECRETS, secret, self.namespace)
        except Conflict:
            winner = await self.load()
            if winner is None:
                raise
            return winner
        self._resource_version = stored["metadata"].get("resourceVersion")
        return bundle
