"""The client resolves the environment's proxy for the apiserver once, at construction,
instead of aiohttp looking it (and ~/.netrc) up on every request: the proxy the
environment names is still the one requests go through."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client

from stash.kube.client import Kube

API = "https://api.example:6443"


Seen = tuple[str | None, dict[str, str] | None, bool]


def _rest_of(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], proxy: str | None = None
) -> Seen:
    """(proxy, proxy headers, whether aiohttp still reads the environment per request)."""
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    async def build() -> Seen:
        cfg = client.Configuration()
        cfg.host = API
        cfg.proxy = proxy
        api = client.ApiClient(configuration=cfg)
        kube = Kube(api)
        rest = api.rest_client
        seen: Seen = (rest.proxy, rest.proxy_headers, rest.pool_manager.trust_env)
        await kube.close()
        return seen

    return asyncio.run(build())


def test_the_environments_proxy_is_used_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy, headers, per_request = _rest_of(
        monkeypatch, {"HTTPS_PROXY": "http://user:pw@proxy.example:3128"}
    )
    assert proxy == "http://proxy.example:3128"
    assert headers == {"Proxy-Authorization": "Basic dXNlcjpwdw=="}
    assert per_request is False


def test_no_proxy_for_an_apiserver_the_environment_exempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "api.example"}
    proxy, headers, per_request = _rest_of(monkeypatch, env)
    assert (proxy, headers, per_request) == (None, None, False)


def test_a_configured_proxy_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"HTTPS_PROXY": "http://proxy.example:3128"}
    proxy, _, _ = _rest_of(monkeypatch, env, proxy="http://mine.example:8080")
    assert proxy == "http://mine.example:8080"
