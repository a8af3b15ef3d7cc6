"""The in-cluster transport: what a pod's client sends to an apiserver it trusts through
the ServiceAccount's CA, with the ServiceAccount's token (read again as it rotates), and
why it refuses to start outside a pod."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stash.kube import transport
from stash.kube.client import Kube, NotFound, Resource
from stash.kube.transport import InClusterConfigError, ServiceAccountTransport, encode_body
from stash.pki import issue_ca, issue_serving_cert

WIDGETS = Resource("example.com", "v1", "widgets", "Widget")


@dataclass
class Apiserver:
    """A TLS server that answers like an apiserver and remembers what it was sent."""

    port: int
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def account(tmp_path: Path) -> tuple[Path, Any]:
    """A ServiceAccount directory (token, CA) and the CA's key pair."""
    now = dt.datetime.now(dt.UTC)
    ca = issue_ca("test-ca", now, dt.timedelta(hours=1))
    directory = tmp_path / "sa"
    directory.mkdir()
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    (directory / "token").write_text("first-token")
    return directory, ca


@pytest.fixture
async def apiserver(account: tuple[Path, Any], tmp_path: Path) -> AsyncIterator[Apiserver]:
    _, ca = account
    pair = issue_serving_cert(ca, [], ["127.0.0.1"], dt.datetime.now(dt.UTC), dt.timedelta(hours=1))
    (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
    (tmp_path / "tls.key").write_bytes(pair.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    server = Apiserver(port=0)

    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        server.seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "authorization": request.headers.get("Authorization"),
                "content_type": request.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
        )
        if request.path.endswith("/missing"):
            status = {"kind": "Status", "reason": "NotFound", "message": "no such widget"}
            return web.json_response(status, status=404)
        return web.json_response({"kind": "Widget", "metadata": {"name": "w"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


def _env(port: int | str) -> dict[str, str]:
    return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port)}


async def test_requests_carry_the_token_and_json_to_the_apiserver_the_ca_vouches_for(
    account: tuple[Path, Any], apiserver: Apiserver
) -> None:
    directory, _ = account
    kube = Kube(ServiceAccountTransport.load(_env(apiserver.port), directory))
    try:
        made = await kube.create(WIDGETS, {"metadata": {"name": "w"}}, "ns")
        await kube.list(WIDGETS, "ns", label_selector="app=web")
        with pytest.raises(NotFound, match="no such widget"):
            await kube.get(WIDGETS, "missing", "ns")
    finally:
        await kube.close()
    assert made["metadata"]["name"] == "w"
    create, listing, _ = apiserver.seen
    assert create["method"] == "POST"
    assert create["path"] == "/apis/example.com/v1/namespaces/ns/widgets"
    assert create["authorization"] == "Bearer first-token"
    assert create["content_type"] == "application/json"
    assert create["body"] == {"metadata": {"name": "w"}}
    assert listing["query"] == {"labelSelector": "app=web"}


async def test_a_rotated_token_is_read_again(
    account: tuple[Path, Any], apiserver: Apiserver, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, _ = account
    monkeypatch.setattr(transport, "TOKEN_REREAD_SECONDS", 0.0)
    kube = Kube(ServiceAccountTransport.load(_env(apiserver.port), directory))
    try:
        await kube.get(WIDGETS, "w", "ns")
        (directory / "token").write_text("rotated-token")
        await kube.get(WIDGETS, "w", "ns")
    finally:
        await kube.close()
    assert [s["authorization"] for s in apiserver.seen] == [
        "Bearer first-token",
        "Bearer rotated-token",
    ]


def test_outside_a_pod_loading_says_what_is_missing(account: tuple[Path, Any]) -> None:
    directory, _ = account
    with pytest.raises(InClusterConfigError, match="host/port is not set"):
        ServiceAccountTransport.load({}, directory)
    with pytest.raises(InClusterConfigError, match="set but empty"):
        ServiceAccountTransport.load(_env(""), directory)
    with pytest.raises(InClusterConfigError, match="token file does not exist"):
        ServiceAccountTransport.load(_env(443), directory.parent / "elsewhere")
    (directory / "ca.crt").write_text("")
    with pytest.raises(InClusterConfigError, match="Cert file exists but empty"):
        ServiceAccountTransport.load(_env(443), directory)


async def test_an_ipv6_service_host_is_bracketed(account: tuple[Path, Any]) -> None:
    directory, _ = account
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    sa = ServiceAccountTransport.load(env, directory)
    try:
        assert sa.host == "https://[fd00::1]:443"
    finally:
        await sa.close()


def test_bodies_are_json_for_json_and_apply_patches() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert json.loads(encode_body({"at": when}, "application/merge-patch+json")) == {
        "at": "2026-01-02T03:04:05+00:00"
    }
    assert json.loads(encode_body({"a": 1}, "application/apply-patch+yaml")) == {"a": 1}
    assert encode_body(None, "application/json") is None
    assert encode_body(b"raw", "application/octet-stream") == b"raw"
    with pytest.raises(ValueError, match="cannot send"):
        encode_body({"a": 1}, "text/plain")


async def test_the_environment_s_proxy_carries_the_requests(
    account: tuple[Path, Any], apiserver: Apiserver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HTTPS_PROXY is resolved once, when the transport is made, and still used for every
    # request (a cluster whose pods reach the apiserver only through a proxy).
    tunnels: list[str] = []

    async def tunnel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        target = head.split()[1]
        tunnels.append(target)
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    proxy = await asyncio.start_server(tunnel, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    directory, _ = account
    kube = Kube(ServiceAccountTransport.load(_env(apiserver.port), directory))
    try:
        await kube.get(WIDGETS, "w", "ns")
        await kube.get(WIDGETS, "w", "ns")
    finally:
        await kube.close()
        proxy.close()
    assert tunnels and set(tunnels) == {f"127.0.0.1:{apiserver.port}"}
    assert len(apiserver.seen) == 2
