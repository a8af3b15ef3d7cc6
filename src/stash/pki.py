"""X.509 for loopback and in-cluster TLS: a self-signed CA and the serving certificates it
signs (ECDSA P-256, SHA-256, PEM in and out).

What it is for: issuing. The webhook's rotation policy and storage (`stash.webhook.certs`)
and the dev control plane's PKI files (`stash_dev.pki`) both issue through here, so both
get the same extensions: a CA that may sign leaf certificates only, serving certificates
that name every host in their SANs (Go's TLS stack ignores the common name) and never
outlive their CA.

Not for: deciding when to rotate, storing keys, or serving TLS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CLOCK_SKEW", "KeyPair", "issue_ca", "issue_serving_cert", "new_key", "pem_of_key"]

CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates start this long before `now`, for clocks slightly behind ours."""


@dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def pem_of_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """`key` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def issue_ca(common_name: str, now: dt.datetime, lifetime: dt.timedelta) -> KeyPair:
    """A self-signed CA valid from `now` (less the clock skew) for `lifetime`; it may sign
    leaf certificates only (path length 0)."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), pem_of_key(key))


def issue_serving_cert(
    ca: KeyPair,
    dns_names: Sequence[str],
    ips: Sequence[str],
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> KeyPair:
    """A TLS server certificate signed by `ca` for these DNS names and IP addresses.

    Its common name is the first name given; it ends after `lifetime` or with the CA,
    whichever comes first. Raises ValueError when no name is given or the CA key is not
    an EC key.
    """
    if not dns_names and not ips:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    issuer = x509.load_pem_x509_certificate(ca.cert_pem)
    signer = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    key = new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    common_name = (list(dns_names) or list(ips))[0]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + lifetime, issuer.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), pem_of_key(key))
