"""Out of a cluster, the client reaches the apiserver a kubeconfig names on aiohttp alone:
it trusts the kubeconfig's CA, presents its client certificate or token, and leaves
what only kubernetes_asyncio follows (exec plugins) to kubernetes_asyncio."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from stash.kube import transport
from stash.kube.client import Kube, Resource
from stash.kube.kubeconfig import KubeconfigTransport
from stash.kube.transport import ApiClientTransport
from stash.pki import KeyPair, issue_ca, issue_serving_cert
from stash_dev.pki import issue_client_cert

WIDGETS = Resource("example.com", "v1", "widgets", "Widget")
HOUR = dt.timedelta(hours=1)


@dataclass
class Apiserver:
    """A TLS apiserver stand-in that asks for (and records) client certificates."""

    url: str
    ca: KeyPair
    seen: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def apiserver(tmp_path: Path) -> AsyncIterator[Apiserver]:
    now = dt.datetime.now(dt.UTC)
    ca = issue_ca("test-ca", now, HOUR)
    pair = issue_serving_cert(ca, [], ["127.0.0.1"], now, HOUR)
    (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
    (tmp_path / "tls.key").write_bytes(pair.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    context.load_verify_locations(cadata=ca.cert_pem.decode())
    context.verify_mode = ssl.CERT_OPTIONAL
    server = Apiserver(url="", ca=ca)

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        server.seen.append(
            {
                "path": request.path,
                "authorization": request.headers.get("Authorization"),
                "client": subject.get("commonName"),
            }
        )
        return web.json_response({"kind": "Widget", "metadata": {"name": "w"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    server.url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        await runner.cleanup()


def _kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "here",
                "contexts": [{"name": "here", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
            }
        )
    )
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _get_widget(kubeconfig: Path) -> Kube:
    kube = await Kube.connect(kubeconfig)
    try:
        await kube.get(WIDGETS, "w", "ns")
    finally:
        await kube.close()
    return kube


async def test_a_token_kubeconfig_trusts_its_ca_data_and_sends_the_token(
    apiserver: Apiserver, tmp_path: Path
) -> None:
    cluster = {"server": apiserver.url, "certificate-authority-data": _b64(apiserver.ca.cert_pem)}
    path = _kubeconfig(tmp_path / "config", cluster, {"token": "admin-token"})
    kube = await _get_widget(path)
    assert isinstance(kube.transport, KubeconfigTransport)
    assert apiserver.seen == [
        {
            "path": "/apis/example.com/v1/namespaces/ns/widgets/w",
            "authorization": "Bearer admin-token",
            "client": None,
        }
    ]


async def test_a_client_certificate_from_files_beside_the_kubeconfig_is_presented(
    apiserver: Apiserver, tmp_path: Path
) -> None:
    client = issue_client_cert(apiserver.ca, "alice", dt.datetime.now(dt.UTC), HOUR)
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_bytes(apiserver.ca.cert_pem)
    (tmp_path / "certs" / "alice.crt").write_bytes(client.cert_pem)
    (tmp_path / "certs" / "alice.key").write_bytes(client.key_pem)
    cluster = {"server": apiserver.url, "certificate-authority": "certs/ca.crt"}
    user = {"client-certificate": "certs/alice.crt", "client-key": "certs/alice.key"}
    await _get_widget(_kubeconfig(tmp_path / "config", cluster, user))
    inline = {
        "client-certificate-data": _b64(client.cert_pem),
        "client-key-data": _b64(client.key_pem),
    }
    await _get_widget(_kubeconfig(tmp_path / "inline", cluster, inline))
    assert [(s["client"], s["authorization"]) for s in apiserver.seen] == [
        ("alice", None),
        ("alice", None),
    ]


async def test_a_token_file_is_read_again_as_it_rotates(
    apiserver: Apiserver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "TOKEN_REREAD_SECONDS", 0.0)
    monkeypatch.setattr("stash.kube.kubeconfig.TOKEN_REREAD_SECONDS", 0.0)
    (tmp_path / "token").write_text("first\n")
    cluster = {"server": apiserver.url, "certificate-authority-data": _b64(apiserver.ca.cert_pem)}
    kube = await Kube.connect(_kubeconfig(tmp_path / "config", cluster, {"tokenFile": "token"}))
    try:
        await kube.get(WIDGETS, "w", "ns")
        (tmp_path / "token").write_text("second\n")
        await kube.get(WIDGETS, "w", "ns")
    finally:
        await kube.close()
    assert [s["authorization"] for s in apiserver.seen] == ["Bearer first", "Bearer second"]


async def test_an_apiserver_the_ca_does_not_vouch_for_is_refused_unless_told_to_skip(
    apiserver: Apiserver, tmp_path: Path
) -> None:
    other = issue_ca("other-ca", dt.datetime.now(dt.UTC), HOUR)
    cluster = {"server": apiserver.url, "certificate-authority-data": _b64(other.cert_pem)}
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        await _get_widget(_kubeconfig(tmp_path / "config", cluster, {"token": "t"}))
    assert apiserver.seen == []
    insecure = {"server": apiserver.url, "insecure-skip-tls-verify": True}
    await _get_widget(_kubeconfig(tmp_path / "insecure", insecure, {"token": "t"}))
    assert [s["authorization"] for s in apiserver.seen] == ["Bearer t"]


async def test_an_exec_plugin_kubeconfig_is_left_to_kubernetes_asyncio(
    apiserver: Apiserver, tmp_path: Path
) -> None:
    cluster = {"server": apiserver.url, "certificate-authority-data": _b64(apiserver.ca.cert_pem)}
    plugin = tmp_path / "plugin.sh"
    credential = json.dumps(
        {
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "status": {"token": "from-plugin"},
        }
    )
    plugin.write_text(f"#!/bin/sh\necho '{credential}'\n")
    plugin.chmod(0o755)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}}
    assert KubeconfigTransport.load(_kubeconfig(tmp_path / "config", cluster, user)) is None
    kube = await _get_widget(tmp_path / "config")
    assert isinstance(kube.transport, ApiClientTransport)
    assert [s["authorization"] for s in apiserver.seen] == ["Bearer from-plugin"]
