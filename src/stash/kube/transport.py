"""How `Kube` reaches the apiserver: the base URL, an authenticated aiohttp session.

What it is for: `Transport`, what the client needs of a connection, and its two kinds.
`ServiceAccountTransport` is the in-cluster one (the pod's ServiceAccount token and CA
under /var/run/secrets/kubernetes.io/serviceaccount, the `kubernetes` Service's
KUBERNETES_SERVICE_HOST/PORT), built on aiohttp alone: a pod's `stash restore` or
`stash run-backup` starts without importing kubernetes_asyncio, whose `client` package
loads every generated model (about half a second of the agent's start-up). It behaves
as kubernetes_asyncio's in-cluster loader does: the token file is read again once a
minute (projected tokens rotate), the CA file verifies the apiserver, and bodies are
sent as JSON. `ApiClientTransport` wraps a kubernetes_asyncio `ApiClient` for
everything a kubeconfig can say (client certificates, exec plugins, proxies).

Not for: requests, verbs or errors (`stash.kube.client`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlencode

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

__all__ = [
    "ApiClientTransport",
    "InClusterConfigError",
    "ServiceAccountTransport",
    "SessionTransport",
    "Transport",
]

#: Where a pod finds its ServiceAccount's token, CA and namespace.
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: How long a token read from the file is used before the file is read again.
TOKEN_REREAD_SECONDS = 60.0
#: Requests to the apiserver in flight at once (kubernetes_asyncio's pool size).
MAX_CONNECTIONS = 100
#: aiohttp's read buffer: a watch event can carry an object of up to 1.5 MiB (etcd).
READ_BUFSIZE = 2**21

Timeout = float | aiohttp.ClientTimeout | None


@runtime_checkable
class Transport(Protocol):
    """An authenticated connection to one apiserver."""

    @property
    def host(self) -> str:
        """The apiserver's base URL (`https://host:port`)."""
        ...

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (its connector is shared by pod exec's websockets)."""
        ...

    async def auth_headers(self) -> dict[str, str]:
        """The headers that authenticate a request now (a fresh token)."""
        ...

    async def send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
        timeout: Timeout,
    ) -> aiohttp.ClientResponse:
        """Send one request; the unread response (the caller releases it)."""
        ...

    async def close(self) -> None:
        """Close the HTTP session."""
        ...


class InClusterConfigError(Exception):
    """The pod's in-cluster settings are missing or empty (not running in a pod?)."""


def _join_host_port(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host or "%" in host else f"{host}:{port}"


def _json_default(value: Any) -> Any:
    """JSON for what kubernetes_asyncio's serialiser also accepts in a body."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_body(body: Any, content_type: str) -> Any:
    """The request data of `body` for `content_type` (JSON for JSON and apply patches)."""
    if "json" in content_type.lower() or content_type == "application/apply-patch+yaml":
        return None if body is None else json.dumps(body, default=_json_default)
    if body is None or isinstance(body, bytes):
        return body
    raise ValueError(f"cannot send a {type(body).__name__} body as {content_type}")


class SessionTransport:
    """An aiohttp session to one apiserver, trusting `ssl_context`; subclasses say how a
    request is authenticated (`auth_headers`). The proxy the environment names for the
    apiserver is resolved once: with trust_env aiohttp would look it (and ~/.netrc) up
    in a worker thread on every request."""

    def __init__(self, host: str, ssl_context: ssl.SSLContext) -> None:
        self._host = host
        self._proxy: str | None = None
        self._proxy_headers: dict[str, str] = {}
        with contextlib.suppress(LookupError, ValueError):
            proxy, auth = get_env_proxy_for_url(URL(host))
            self._proxy = str(proxy)
            if auth is not None:
                self._proxy_headers = {"Proxy-Authorization": auth.encode()}
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=ssl_context),
            read_bufsize=READ_BUFSIZE,
        )

    @property
    def host(self) -> str:
        return self._host

    @property
    def session(self) -> aiohttp.ClientSession:
        return self._session

    async def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    async def send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
        timeout: Timeout,
    ) -> aiohttp.ClientResponse:
        url = self._host + path + (f"?{urlencode(query)}" if query else "")
        content_type = headers.setdefault("Content-Type", "application/json")
        data = encode_body(body, content_type) if method not in ("GET", "HEAD") else None
        if not timeout:
            limit = aiohttp.ClientTimeout()
        elif isinstance(timeout, aiohttp.ClientTimeout):
            limit = timeout
        else:
            limit = aiohttp.ClientTimeout(total=timeout)
        return await self._session.request(
            method,
            url,
            headers={**headers, **await self.auth_headers()},
            data=data,
            timeout=limit,
            proxy=self._proxy,
            proxy_headers=self._proxy_headers or None,
        )

    async def close(self) -> None:
        await self._session.close()


class ServiceAccountTransport(SessionTransport):
    """The in-cluster connection, with the pod's ServiceAccount token (module docstring)."""

    def __init__(self, host: str, ca_file: Path, token_file: Path) -> None:
        self._token_file = token_file
        self._token = ""
        self._token_read_at = 0.0
        self._read_token()
        super().__init__(host, ssl.create_default_context(cafile=str(ca_file)))

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        directory: Path = SERVICE_ACCOUNT_DIR,
    ) -> ServiceAccountTransport:
        """The transport of this pod; `InClusterConfigError` when it is not in one."""
        env = os.environ if environ is None else environ
        host = env.get("KUBERNETES_SERVICE_HOST")
        port = env.get("KUBERNETES_SERVICE_PORT")
        if host is None or port is None:
            raise InClusterConfigError("Service host/port is not set.")
        if not host or not port:
            raise InClusterConfigError("Service host/port is set but empty.")
        token, ca = directory / "token", directory / "ca.crt"
        if not token.is_file():
            raise InClusterConfigError("Service token file does not exist.")
        if not ca.is_file():
            raise InClusterConfigError("Service certification file does not exists.")
        if not ca.read_text():
            raise InClusterConfigError("Cert file exists but empty.")
        return cls(f"https://{_join_host_port(host, port)}", ca, token)

    def _read_token(self) -> None:
        content = self._token_file.read_text()
        if not content:
            raise InClusterConfigError("Token file exists but empty.")
        self._token = content
        self._token_read_at = time.monotonic()

    async def auth_headers(self) -> dict[str, str]:
        if time.monotonic() - self._token_read_at >= TOKEN_REREAD_SECONDS:
            self._read_token()
        return {"authorization": f"Bearer {self._token}"}


class ApiClientTransport:
    """A kubernetes_asyncio `ApiClient` (a kubeconfig's connection) as a `Transport`."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    @property
    def session(self) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = self.api.rest_client.pool_manager
        return session

    async def auth_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        await self.api.update_params_for_auth(headers, [], ["BearerToken"])
        return headers

    async def send(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]],
        headers: dict[str, str],
        body: Any,
        timeout: Timeout,
    ) -> aiohttp.ClientResponse:
        resp: aiohttp.ClientResponse = await self.api.call_api(
            path,
            method,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
        return resp

    async def close(self) -> None:
        await self.api.close()
