"""A thin async JSON client over an authenticated transport (`stash.kube.transport`).

In a pod the transport is the ServiceAccount's, on aiohttp alone; with a kubeconfig,
the kubeconfig's (`stash.kube.kubeconfig`, aiohttp alone too), unless it needs what only
kubernetes_asyncio follows (exec plugins, auth providers): then kubernetes_asyncio
supplies configuration and the HTTP session, and is imported only then. This module sends raw
requests and returns parsed JSON dicts, raising a typed `KubeError` for every non-2xx
answer. Not for: business logic, retries (callers decide), or deserialising into
generated model classes.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from stash.kube.kubeconfig import KubeconfigError, KubeconfigTransport
from stash.kube.lines import read_lines
from stash.kube.transport import ApiClientTransport, ServiceAccountTransport, Transport

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
#: Server-side apply. JSON is valid YAML, so the body is sent as JSON.
APPLY_PATCH = "application/apply-patch+yaml"
#: Accept headers that make the apiserver send metadata only (no data, no spec).
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_OBJECT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class KubeError(Exception):
    """A non-2xx answer from the apiserver, with its Status reason and message."""

    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body


class NotFound(KubeError):
    """404: the object (or its namespace) does not exist."""


class Conflict(KubeError):
    """409: a resourceVersion conflict, or the object already exists (reason tells)."""

    @property
    def already_exists(self) -> bool:
        return self.reason == "AlreadyExists"


class Gone(KubeError):
    """410: the requested resourceVersion is too old (compacted)."""


class Forbidden(KubeError):
    """403: RBAC denied the request."""


class Invalid(KubeError):
    """422: schema or validation failure; the message names the field."""


_ERRORS: dict[int, type[KubeError]] = {
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}


def error_from(status: int, body: Any) -> KubeError:
    """Build the typed error for an HTTP status and its (Status object) body."""
    reason, message = "", ""
    if isinstance(body, dict):
        reason = str(body.get("reason", ""))
        message = str(body.get("message", ""))
    elif body:
        message = str(body)[:500]
    return _ERRORS.get(status, KubeError)(status, reason, message, body)


@dataclass(frozen=True)
class Resource:
    """An API resource: where its objects live on the REST path."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The REST path of the collection, or of one object (and a subresource)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


class Kube:
    """Raw JSON requests to one apiserver, through a `Transport` (or a kubernetes_asyncio
    `ApiClient`, which is wrapped in one)."""

    def __init__(self, api: ApiClient | Transport, timeout: float = 30.0) -> None:
        self.transport: Transport = api if isinstance(api, Transport) else ApiClientTransport(api)
        self.timeout = timeout
        if not isinstance(api, Transport):
            _resolve_environment_once(api)

    @classmethod
    async def connect(cls, kubeconfig: Path | None = None, timeout: float = 30.0) -> Kube:
        """Connect with an explicit kubeconfig (on aiohttp alone when
        `stash.kube.kubeconfig` reads it, else through kubernetes_asyncio), or in-cluster
        settings when none is given (`InClusterConfigError` when there are none)."""
        if kubeconfig is None:
            return cls(ServiceAccountTransport.load(), timeout)
        with contextlib.suppress(KubeconfigError):  # kubernetes_asyncio says what is wrong
            transport = KubeconfigTransport.load(Path(kubeconfig))
            if transport is not None:
                return cls(transport, timeout)
        from kubernetes_asyncio import client, config

        cfg = client.Configuration()
        await config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        return cls(client.ApiClient(configuration=cfg), timeout)

    @property
    def host(self) -> str:
        """The apiserver's base URL."""
        return self.transport.host

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.transport.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | aiohttp.ClientTimeout | None = None,
        accept: str = "application/json",
    ) -> Any:
        """Send one request; return the decoded JSON body or raise `KubeError`."""
        resp = await self._send(method, path, query, body, content_type, timeout, accept)
        try:
            raw = await resp.read()
        finally:
            resp.release()
        data: Any = json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode(errors="replace")
        if not 200 <= resp.status <= 299:
            raise error_from(resp.status, data)
        return data

    async def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: float | aiohttp.ClientTimeout | None,
        accept: str = "application/json",
    ) -> aiohttp.ClientResponse:
        params = [(k, _qv(v)) for k, v in (query or {}).items() if v is not None]
        headers = {"Content-Type": content_type, "Accept": accept}
        limit = timeout if timeout is not None else self.timeout
        return await self.transport.send(method, path, params, headers, body, limit)

    # --------------------------------------------------------------- verbs
    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        """GET one object."""
        out: JSON = await self.request("GET", res.path(namespace, name))
        return out

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
        metadata_only: bool = False,
    ) -> JSON:
        """LIST a collection (one page); the raw List object (a PartialObjectMetadataList
        of metadata only with `metadata_only`)."""
        query = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "limit": limit,
            "continue": continue_token,
            "resourceVersion": resource_version,
        }
        accept = METADATA_LIST if metadata_only else "application/json"
        out: JSON = await self.request("GET", res.path(namespace), query=query, accept=accept)
        return out

    async def list_all(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        page: int = 500,
        metadata_only: bool = False,
    ) -> tuple[builtins.list[JSON], str]:
        """Every object of a collection (paged); returns (items, list resourceVersion)."""
        items: builtins.list[JSON] = []
        token: str | None = None
        while True:
            data = await self.list(
                res,
                namespace,
                label_selector=label_selector,
                limit=page,
                continue_token=token,
                metadata_only=metadata_only,
            )
            items.extend(data.get("items") or [])
            token = data.get("metadata", {}).get("continue") or None
            if not token:
                return items, str(data.get("metadata", {}).get("resourceVersion", ""))

    async def create(self, res: Resource, obj: JSON, namespace: str | None = None) -> JSON:
        """POST a new object."""
        out: JSON = await self.request("POST", res.path(namespace), body=obj)
        return out

    async def replace(
        self,
        res: Resource,
        obj: JSON,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> JSON:
        """PUT an object (its metadata.resourceVersion is the optimistic lock)."""
        name = obj["metadata"]["name"]
        out: JSON = await self.request("PUT", res.path(namespace, name, subresource), body=obj)
        return out

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> JSON:
        """PATCH an object (merge patch by default)."""
        path = res.path(namespace, name, subresource)
        out: JSON = await self.request("PATCH", path, body=patch, content_type=content_type)
        return out

    async def apply(
        self,
        res: Resource,
        obj: JSON,
        *,
        field_manager: str,
        force: bool = False,
        subresource: str | None = None,
    ) -> JSON:
        """Server-side apply `obj` (created when missing) as `field_manager`.

        `obj` holds apiVersion, kind, metadata.name (and metadata.namespace for a
        namespaced kind) and only the fields this manager owns: a field it applied
        before and leaves out now is removed (unless another manager set it too).
        Without `force`, a field another manager
        set to a different value raises `Conflict` and nothing is written; with it, this
        manager takes those fields over.
        """
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace")
        if res.namespaced and not namespace:
            raise ValueError(f"applying a {res.kind} needs metadata.namespace")
        query = {"fieldManager": field_manager, "force": True if force else None}
        path = res.path(namespace, meta["name"], subresource)
        out: JSON = await self.request(
            "PATCH", path, query=query, body=obj, content_type=APPLY_PATCH
        )
        return out

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str | None = None,
        uid: str | None = None,
    ) -> JSON | None:
        """DELETE an object; None when it was already gone."""
        body: JSON = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            body["propagationPolicy"] = propagation
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            out: JSON = await self.request("DELETE", res.path(namespace, name), body=body)
        except NotFound:
            return None
        return out

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        metadata_only: bool = False,
    ) -> AsyncIterator[JSON]:
        """Stream watch events ({type, object}) from `resource_version` (objects as
        PartialObjectMetadata with `metadata_only`).

        Lines are split by `stash.kube.lines` (aiohttp's line reader is too small for
        large objects). An ERROR event ends the stream with the typed error (`Gone` for
        an expired resourceVersion).
        """
        query = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "timeoutSeconds": timeout_seconds,
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        accept = METADATA_OBJECT if metadata_only else "application/json"
        resp = await self._send(
            "GET", res.path(namespace), query, None, "application/json", timeout, accept
        )
        try:
            if resp.status != 200:
                raw = await resp.read()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                raise error_from(resp.status, body)
            async for line in read_lines(resp.content):
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise error_from(int(status.get("code") or 500), status)
                yield event
        finally:
            resp.release()


def _resolve_environment_once(api: ApiClient) -> None:
    """kubernetes_asyncio's session trusts the environment, so aiohttp looks up the proxy
    and ~/.netrc in a worker thread on every request (two thread hops each; thousands of
    requests a second at 10,000 objects). The proxy the environment names for the
    apiserver is resolved here once instead (an explicit `proxy` in the configuration
    still wins); netrc credentials are not used: requests carry a token or a certificate."""
    rest = getattr(api, "rest_client", None)
    session = getattr(rest, "pool_manager", None)
    if rest is None or not isinstance(session, aiohttp.ClientSession):
        return
    if not rest.proxy:
        with contextlib.suppress(LookupError, ValueError):
            proxy, auth = get_env_proxy_for_url(URL(str(api.configuration.host)))
            rest.proxy = str(proxy)
            if auth is not None:
                rest.proxy_headers = {
                    **(rest.proxy_headers or {}),
                    "Proxy-Authorization": auth.encode(),
                }
    session._trust_env = False


def _qv(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def key_of(obj: Mapping[str, Any]) -> str:
    """The cache/queue key of an object: `namespace/name`, or `name` when cluster-scoped."""
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of `key_of`."""
    if "/" in key:
        ns, name = key.split("/", 1)
        return ns, name
    return None, key
