"""A kubeconfig's connection on aiohttp alone, for the common kubeconfigs.

What it is for: `KubeconfigTransport.load(path)` reads the current context of one
kubeconfig file and connects as kubernetes_asyncio's loader would: the cluster's
`server`, its CA (`certificate-authority-data` or the `certificate-authority` file,
relative to the kubeconfig's folder; the system's CAs when neither is given) or
`insecure-skip-tls-verify`, and the user's client certificate and key (data or files), a
bearer `token` (or `tokenFile`, read again once a minute as it may rotate) or
`username`/`password`. The operator and the agents out of a cluster (`make run`, the
tests) then never import `kubernetes_asyncio.client`, whose generated models weigh about
60 MB of the operator's memory and half a second of start-up.

What it leaves to kubernetes_asyncio: a kubeconfig this module does not read alike
(`exec` plugins, `auth-provider`s, `tls-server-name`, `proxy-url`): `load` answers None
and `stash.kube.client.Kube.connect` uses kubernetes_asyncio's loader as before. Not
for: finding which kubeconfig to use (callers pass the file), nor merging several.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stash.kube.transport import TOKEN_REREAD_SECONDS, SessionTransport

__all__ = ["KubeconfigError", "KubeconfigTransport", "read_kubeconfig"]

#: Settings of a cluster or user that only kubernetes_asyncio's loader follows.
_CLUSTER_ELSEWHERE = ("tls-server-name", "proxy-url")
_USER_ELSEWHERE = ("exec", "auth-provider")


class KubeconfigError(Exception):
    """The kubeconfig does not say how to reach a cluster (no context, cluster, server)."""


@dataclass(frozen=True)
class Connection:
    """What one context of a kubeconfig says about reaching its apiserver."""

    server: str
    ca_pem: str | None
    ca_file: Path | None
    verify: bool
    cert_pem: bytes | None
    key_pem: bytes | None
    token: str | None
    token_file: Path | None
    basic: str | None
    """`user:password`, when the user authenticates so."""


def _named(config: dict[str, Any], section: str, name: object) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(section[:-1])
            return body if isinstance(body, dict) else {}
    raise KubeconfigError(f"kubeconfig has no {section[:-1]} named {name!r}")


def _data_or_file(
    section: dict[str, Any], key: str, base: Path
) -> tuple[bytes | None, Path | None]:
    """`<key>-data` (base64) or the file `<key>` (relative to the kubeconfig's folder)."""
    data = section.get(f"{key}-data")
    if data:
        return base64.b64decode(str(data)), None
    path = section.get(key)
    if path:
        return None, base / str(path)
    return None, None


def read_kubeconfig(path: Path) -> Connection | None:
    """The current context's connection (None: one only kubernetes_asyncio reads)."""
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig")
    name = config.get("current-context")
    if not name:
        raise KubeconfigError(f"{path} names no current-context")
    context = _named(config, "contexts", name)
    cluster = _named(config, "clusters", context.get("cluster"))
    user = _named(config, "users", context.get("user")) if context.get("user") else {}
    if any(k in cluster for k in _CLUSTER_ELSEWHERE) or any(k in user for k in _USER_ELSEWHERE):
        return None
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise KubeconfigError(f"cluster {context.get('cluster')!r} has no server")
    base = path.resolve().parent
    ca, ca_file = _data_or_file(cluster, "certificate-authority", base)
    cert, cert_file = _data_or_file(user, "client-certificate", base)
    key, key_file = _data_or_file(user, "client-key", base)
    token_file = user.get("tokenFile")
    basic = None
    if "username" in user and "password" in user:
        basic = f"{user['username']}:{user['password']}"
    return Connection(
        server=server,
        ca_pem=ca.decode() if ca else None,
        ca_file=ca_file,
        verify=not cluster.get("insecure-skip-tls-verify", False),
        cert_pem=cert if cert is not None else (cert_file.read_bytes() if cert_file else None),
        key_pem=key if key is not None else (key_file.read_bytes() if key_file else None),
        token=str(user["token"]) if user.get("token") else None,
        token_file=base / str(token_file) if token_file and not user.get("token") else None,
        basic=basic,
    )


def _ssl_context(conn: Connection) -> ssl.SSLContext:
    """Trust the kubeconfig's CA (or the system's), present its client certificate."""
    context = ssl.create_default_context(
        cafile=str(conn.ca_file) if conn.ca_file else None, cadata=conn.ca_pem
    )
    if conn.cert_pem is not None and conn.key_pem is not None:
        # load_cert_chain reads files only: a private folder, gone once they are read.
        with tempfile.TemporaryDirectory(prefix="stash-kubeconfig-") as folder:
            cert, key = Path(folder, "tls.crt"), Path(folder, "tls.key")
            for where, pem in ((cert, conn.cert_pem), (key, conn.key_pem)):
                fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(pem)
            context.load_cert_chain(cert, key)
    if not conn.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class KubeconfigTransport(SessionTransport):
    """A kubeconfig's connection (module docstring)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._token = conn.token
        self._token_read_at = 0.0
        if conn.token_file is not None:
            self._read_token()
        super().__init__(conn.server, _ssl_context(conn))

    @classmethod
    def load(cls, path: Path) -> KubeconfigTransport | None:
        """The transport of `path`'s current context (None: leave it to kubernetes_asyncio)."""
        conn = read_kubeconfig(path)
        return cls(conn) if conn is not None else None

    def _read_token(self) -> None:
        assert self._conn.token_file is not None
        self._token = self._conn.token_file.read_text().strip()
        self._token_read_at = time.monotonic()

    async def auth_headers(self) -> dict[str, str]:
        conn = self._conn
        if conn.token_file is not None and (
            time.monotonic() - self._token_read_at >= TOKEN_REREAD_SECONDS
        ):
            self._read_token()
        if self._token:
            return {"authorization": f"Bearer {self._token}"}
        if conn.basic is not None:
            return {"authorization": "Basic " + base64.b64encode(conn.basic.encode()).decode()}
        return {}
