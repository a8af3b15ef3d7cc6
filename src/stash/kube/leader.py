"""Leader election on a coordination.k8s.io/v1 Lease (client-go's leaderelection shape).

`LeaderElector.run(lead)` loops forever: acquire the lease, run `lead()` while renewing
it every `retry_period`, and cancel `lead()` as soon as renewal has failed for
`renew_deadline` (which is shorter than `lease_duration`, so work stops before another
replica can take the lease). Expiry is judged by the time *we observed* a change of the
lease record, never by comparing our clock with the holder's timestamps. On shutdown the
lease is released so a standby takes over at once. Not for: what the leader does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp

from stash.kube.client import JSON, Conflict, Kube, KubeError, NotFound, Resource

log = logging.getLogger(__name__)

LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")


def _micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Competes for one Lease with identity `identity`."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        #: Called with True when this replica starts leading, False when it stops.
        self.on_change = on_change
        self.is_leader = False
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Acquire, lead while the lease holds, repeat; until cancelled."""
        try:
            while True:
                await self._acquire()
                await self._lead(lead)
        finally:
            if self._observed is not None and self._observed[0] == self.identity:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._release())
            self._set_leader(False)

    async def _acquire(self) -> None:
        while True:
            if await self.try_acquire_or_renew():
                log.info("lease %s/%s acquired by %s", self.namespace, self.name, self.identity)
                return
            await asyncio.sleep(self.retry_period)

    async def _lead(self, lead: Callable[[], Awaitable[None]]) -> None:
        self._set_leader(True)
        work = asyncio.create_task(_as_coro(lead), name="leader work")
        last_renew = self.clock()
        try:
            while not work.done():
                done, _ = await asyncio.wait({work}, timeout=self.retry_period)
                if done:
                    break
                if await self.try_acquire_or_renew():
                    last_renew = self.clock()
                elif self.clock() - last_renew >= self.renew_deadline:
                    log.warning("lease %s/%s lost; stopping leader work", self.namespace, self.name)
                    break
        finally:
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            self._set_leader(False)
        if work.done() and not work.cancelled() and work.exception() is not None:
            log.error("leader work failed: %s", work.exception())

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or renew the lease; True when we hold it afterwards."""
        now_s = _micro_now()
        try:
            lease = await self.kube.get(LEASES, self.name, self.namespace)
        except NotFound:
            try:
                await self.kube.create(LEASES, self._lease_body(now_s, now_s, 0), self.namespace)
            except (Conflict, KubeError, aiohttp.ClientError, TimeoutError):
                return False
            self._observe((self.identity, now_s))
            return True
        except (KubeError, aiohttp.ClientError, TimeoutError):
            return False
        spec = lease.get("spec", {})
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime", "")))
        if record != self._observed:
            self._observe(record)
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if self.clock() < self._observed_at + duration:
                return False
        transitions = int(spec.get("leaseTransitions") or 0)
        acquire = spec.get("acquireTime") if holder == self.identity else now_s
        if holder != self.identity:
            transitions += 1
        body = self._lease_body(acquire or now_s, now_s, transitions)
        body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
        try:
            await self.kube.replace(LEASES, body, self.namespace)
        except (KubeError, aiohttp.ClientError, TimeoutError):
            return False
        self._observe((self.identity, now_s))
        return True

    async def _release(self) -> None:
        lease = await self.kube.get(LEASES, self.name, self.namespace)
        if lease.get("spec", {}).get("holderIdentity") != self.identity:
            return
        spec = lease["spec"]
        spec["holderIdentity"] = None
        spec["leaseDurationSeconds"] = 1
        spec["renewTime"] = _micro_now()
        await self.kube.replace(LEASES, lease, self.namespace)

    def _lease_body(self, acquire: str, renew: str, transitions: int) -> JSON:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease_duration),
                "acquireTime": acquire,
                "renewTime": renew,
                "leaseTransitions": transitions,
            },
        }

    def _observe(self, record: tuple[str, str]) -> None:
        self._observed = record
        self._observed_at = self.clock()

    def _set_leader(self, value: bool) -> None:
        self.is_leader = value
        if self.on_change is not None:
            self.on_change(value)


async def _as_coro(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()
