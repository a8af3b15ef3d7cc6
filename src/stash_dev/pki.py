"""Throw-away PKI files for the local control plane: the cluster CA and apiserver serving
certificate, the service-account signing key, and the front-proxy CA with the client
certificate the apiserver proxies to aggregated APIs with.

The CAs and the serving certificate are issued by `stash.pki`, the module the webhook
issues its own certificates with; the front-proxy client certificate (clientAuth) is
issued here, since nothing in the operator needs one. Not for: anything kept beyond a
loopback test cluster's life.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stash.pki import CLOCK_SKEW, KeyPair, issue_ca, issue_serving_cert, new_key, pem_of_key

#: The front-proxy client's common name (kube-apiserver --requestheader-allowed-names).
FRONT_PROXY_CLIENT = "front-proxy-client"

#: The common name of the apiserver's kubelet client certificate (the kubelet's exec
#: endpoint accepts only it; stash_dev.kubelet_exec).
KUBELET_CLIENT = "kube-apiserver-kubelet-client"

#: Names the apiserver's serving certificate carries (the `kubernetes` Service's too).
APISERVER_NAMES = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
]
APISERVER_IPS = ["127.0.0.1", "10.0.0.1"]


def new_signing_key() -> tuple[bytes, bytes]:
    """A key pair for signing service-account tokens: (private PEM, public PEM)."""
    key = new_key()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def issue_client_cert(
    ca: KeyPair, common_name: str, now: dt.datetime, lifetime: dt.timedelta
) -> KeyPair:
    """A TLS client certificate (clientAuth) for `common_name`, signed by `ca`."""
    issuer = x509.load_pem_x509_certificate(ca.cert_pem)
    signer = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    key = new_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + lifetime, issuer.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), pem_of_key(key))


def write_pair(pair: KeyPair, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write `<stem>.crt` and `<stem>.key` (mode 0600) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    key.chmod(0o600)
    return crt, key


def write_cluster_pki(directory: Path, now: dt.datetime, node_ip: str = "127.0.0.1") -> KeyPair:
    """Write every file the control plane's flags name into `directory`; return the CA.

    `ca` (clients and serving), `apiserver` (serving), `sa.key`/`sa.pub` (token
    signing), `front-proxy-ca` (--requestheader-client-ca-file) and `front-proxy-client`
    (--proxy-client-cert-file, CN FRONT_PROXY_CLIENT), `kubelet` (the stand-in kubelet's
    serving certificate, for `node_ip`) and `apiserver-kubelet-client`
    (--kubelet-client-certificate, CN KUBELET_CLIENT).
    """
    year, decade = dt.timedelta(days=365), dt.timedelta(days=3650)
    ca = issue_ca("stash-dev-ca", now, decade)
    write_pair(ca, directory, "ca")
    serving = issue_serving_cert(
        ca, dns_names=APISERVER_NAMES, ips=APISERVER_IPS, now=now, lifetime=year
    )
    write_pair(serving, directory, "apiserver")
    sa_private, sa_public = new_signing_key()
    (directory / "sa.key").write_bytes(sa_private)
    (directory / "sa.key").chmod(0o600)
    (directory / "sa.pub").write_bytes(sa_public)
    front_proxy = issue_ca("stash-dev-front-proxy-ca", now, decade)
    write_pair(front_proxy, directory, "front-proxy-ca")
    write_pair(
        issue_client_cert(front_proxy, FRONT_PROXY_CLIENT, now, year),
        directory,
        "front-proxy-client",
    )
    ips = sorted({node_ip, "127.0.0.1"})
    kubelet = issue_serving_cert(ca, dns_names=["localhost"], ips=ips, now=now, lifetime=year)
    write_pair(kubelet, directory, "kubelet")
    client = issue_client_cert(ca, KUBELET_CLIENT, now, year)
    write_pair(client, directory, "apiserver-kubelet-client")
    return ca
