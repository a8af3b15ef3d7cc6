"""Throw-away PKI files for the local control plane: the service-account signing key and
writing certificate/key pairs into its state directory.

The CA and the apiserver's serving certificate are issued by `stash.pki`, the module the
webhook issues its own certificates with. Not for: anything kept beyond a loopback test
cluster's life.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from stash.pki import KeyPair, new_key


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


def write_pair(pair: KeyPair, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write `<stem>.crt` and `<stem>.key` (mode 0600) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    crt.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    key.chmod(0o600)
    return crt, key
