"""An apiserver outage is no executor's silence (issue #11, found by the chaos suite).

While kube-apiserver is down, neither the operator can see a heartbeat Lease nor an
executor renew it. The operator used to count that time as the executor's silence and
fail a backup that was running fine once the apiserver came back; now silence counts
from when it sees the heartbeats again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, KubeError
from stash.kube.leader import LEASES
from stash.kube.status import update_status
from stash_dev import ControlPlane
from tests.integration.operator.conftest import OperatorFactory, create_world
from tests.support.cluster import eventually

# serial: it stops the apiserver
pytestmark = [pytest.mark.cluster, pytest.mark.serial]

T = TypeVar("T")
HEARTBEAT_TIMEOUT = 8.0
OUTAGE = 10.0
#: Seconds the executor needs after the outage to get a renewal through (its renewal
#: period; the apiserver also answers 429 for a moment after a restart).
RECONNECT = 4.0


def _tolerant(probe: Callable[[], Awaitable[T | None]]) -> Callable[[], Awaitable[T | None]]:
    """`probe`, with an apiserver that does not answer (yet) read as "not yet"."""

    async def call() -> T | None:
        try:
            return await probe()
        except (KubeError, aiohttp.ClientError, OSError, TimeoutError):
            return None

    return call


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Executor:
    """What a live backup executor does to its heartbeat: renew it every 2 s, unless
    the apiserver does not answer."""

    def __init__(self, kube: Kube, ns: str, session: str) -> None:
        self.kube, self.ns = kube, ns
        self.name = f"stash-hb-{session}-host-0"
        self.session = session
        self.paused = asyncio.Event()

    async def start(self) -> None:
        now = _now()
        body = {
            "metadata": {
                "name": self.name,
                "labels": {
                    "stash.appscode.com/backup-session": self.session,
                    "stash.appscode.com/hostname": "host-0",
                },
            },
            "spec": {"holderIdentity": "web-abc-123", "renewTime": now, "acquireTime": now},
        }
        await self.kube.create(LEASES, body, self.ns)

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            if self.paused.is_set():
                continue
            with contextlib.suppress(KubeError, aiohttp.ClientError, OSError, TimeoutError):
                lease = await self.kube.get(LEASES, self.name, self.ns)
                lease["spec"]["renewTime"] = _now()
                await self.kube.replace(LEASES, lease, self.ns)


async def _phase(kube: Kube, ns: str, name: str) -> str | None:
    obj = await kube.get(BACKUPSESSIONS, name, ns)
    return (obj.get("status") or {}).get("phase")


async def test_an_apiserver_outage_does_not_fail_a_live_executor(
    rawkube: Kube, run_operator: OperatorFactory, control_plane: ControlPlane, namespace: str
) -> None:
    await run_operator(executor_heartbeat_timeout=HEARTBEAT_TIMEOUT)
    await create_world(rawkube, namespace)

    async def ready() -> bool:
        obj = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
        return (obj.get("status") or {}).get("phase") == "Ready"

    await eventually(ready, timeout=30, what="BackupConfiguration Ready")
    bc = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
    name = await create_backup_session(
        rawkube, bc, dt.datetime.fromtimestamp(1_700_000_400, dt.UTC)
    )

    async def running() -> bool:
        return await _phase(rawkube, namespace, name) == "Running"

    await eventually(running, timeout=30, what=f"{name} Running")
    executor = _Executor(rawkube, namespace, name)
    await executor.start()
    renewing = asyncio.create_task(executor.renew_forever())
    try:
        await asyncio.sleep(HEARTBEAT_TIMEOUT)  # the operator has seen it renewed
        executor.paused.set()  # it cannot reach the apiserver either
        await asyncio.to_thread(control_plane.restart_apiserver, 60.0, OUTAGE)
        await asyncio.sleep(RECONNECT)
        executor.paused.clear()
        await asyncio.sleep(2 * HEARTBEAT_TIMEOUT)  # the operator looks again, many times

        def report(live: JSON) -> JSON:
            status = dict(live["status"])
            target = dict(status["targets"][0])
            stats = target.get("stats") or []
            assert not stats, f"the live executor's host was failed: {stats}"
            target["stats"] = [{"hostname": "host-0", "phase": "Succeeded", "duration": "9s"}]
            status["targets"] = [target]
            return status

        async def reported() -> bool:
            await update_status(rawkube, BACKUPSESSIONS, name, namespace, report)
            return True

        await eventually(_tolerant(reported), timeout=30, what=f"host-0 reported in {name}")
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing

    async def succeeded() -> bool:
        return await _phase(rawkube, namespace, name) == "Succeeded"

    await eventually(_tolerant(succeeded), timeout=30, what=f"{name} Succeeded")
