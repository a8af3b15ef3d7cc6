"""Is each component of the local control plane ready? The start-up probes of
`ControlPlane`, and the loop that waits for one.

The apiserver, the controller manager and the stand-in kubelet are asked through
`stash.kube.client.Kube` with the admin kubeconfig, the client everything else uses; etcd
has no Kubernetes API, so its `/health` is one aiohttp GET.

Not for: starting or stopping processes (`stash_dev.controlplane`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from stash.kube.client import Kube, KubeError, NotFound
from stash.kube.resources import NODES, SERVICEACCOUNTS

T = TypeVar("T")

#: Per-request limit while polling: a component that hangs is retried, not waited for.
PROBE_TIMEOUT = 5.0
POLL_INTERVAL = 0.25


class NotReady(Exception):
    """A component did not become ready; the message says which and why."""


class Probes:
    """The readiness questions, over one `Kube` and one HTTP session (`async with`)."""

    def __init__(self, kubeconfig: Path, etcd_url: str) -> None:
        self.kubeconfig, self.etcd_url = kubeconfig, etcd_url
        self._kube: Kube | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Probes:
        self._kube = await Kube.connect(self.kubeconfig, timeout=PROBE_TIMEOUT)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.close()
        if self._kube is not None:
            await self._kube.close()

    @property
    def kube(self) -> Kube:
        """The admin client (inside `async with`)."""
        if self._kube is None:
            raise RuntimeError("Probes used outside `async with`")
        return self._kube

    async def etcd_healthy(self) -> bool:
        """etcd answers /health with health "true"."""
        if self._http is None:
            raise RuntimeError("Probes used outside `async with`")
        async with self._http.get(f"{self.etcd_url}/health") as resp:
            body = await resp.json(content_type=None)
        return bool(body.get("health") == "true")

    async def apiserver_ready(self) -> bool:
        """kube-apiserver's /readyz passes."""
        await self.kube.request("GET", "/readyz")
        return True

    async def controller_manager_working(self) -> bool:
        """The serviceaccount controller created `default` in `default`: KCM is syncing."""
        try:
            await self.kube.get(SERVICEACCOUNTS, "default", "default")
        except NotFound:
            return False
        return True

    async def nodes_ready(self, count: int) -> bool:
        """At least `count` Nodes report Ready (the stand-in kubelet registered them)."""
        nodes = (await self.kube.list(NODES)).get("items") or []
        ready = [
            n
            for n in nodes
            for c in (n.get("status") or {}).get("conditions") or []
            if c.get("type") == "Ready" and c.get("status") == "True"
        ]
        return len(ready) >= count


async def wait_until(
    name: str,
    deadline: float,
    ready: Callable[[], Awaitable[bool]],
    exited: Callable[[], str | None],
) -> None:
    """Poll `ready` until it holds or `deadline` (time.monotonic) passes; raise NotReady
    at once when `exited` says the component's process is gone (its message)."""
    last_err = ""
    while time.monotonic() < deadline:
        gone = exited()
        if gone is not None:
            raise NotReady(f"{name} {gone} during start-up")
        try:
            if await ready():
                return
        except (OSError, aiohttp.ClientError, KubeError, TimeoutError, ValueError) as exc:
            last_err = str(exc) or type(exc).__name__
        await asyncio.sleep(POLL_INTERVAL)
    raise NotReady(f"{name} not ready in time ({last_err})")


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a private event loop; for the blocking `ControlPlane`
    methods. The calling thread's own event loop setting is left alone; called from a
    running loop it refuses (use `asyncio.to_thread`) rather than block that loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(coro)
    coro.close()
    raise RuntimeError("this blocks: from async code, call it with asyncio.to_thread")
