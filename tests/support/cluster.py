"""Test-side helpers for the real control plane: clients bound to its kubeconfig only."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from kubernetes_asyncio import client, config

T = TypeVar("T")


async def api_client_for(kubeconfig: Path) -> client.ApiClient:
    """A kubernetes_asyncio client for exactly this kubeconfig (never ~/.kube or in-cluster)."""
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return client.ApiClient(configuration=cfg)


def token_client(server: str, ca_file: Path, token: str) -> client.ApiClient:
    """A client that authenticates with a bearer token (for RBAC tests)."""
    cfg = client.Configuration(host=server)
    cfg.ssl_ca_cert = str(ca_file)
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(configuration=cfg)


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll `probe` until it returns a truthy value; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def etcd_compact(etcd_url: str) -> int:
    """Compact etcd at its current revision through etcd's JSON gateway; return it."""
    key = base64.b64encode(b"/").decode()
    req = urllib.request.Request(
        f"{etcd_url}/v3/kv/range", data=json.dumps({"key": key}).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        rev = int(json.loads(r.read())["header"]["revision"])
    req = urllib.request.Request(
        f"{etcd_url}/v3/kv/compaction",
        data=json.dumps({"revision": str(rev), "physical": True}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()
    return rev
