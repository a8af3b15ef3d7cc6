"""Leader election on a coordination.k8s.io/v1 Lease (client-go's leaderelection shape).

`LeaderElector.run(lead)` loops forever: acquire the lease, run `lead()` while renewing
it every `retry_period`, and cancel `lead()` as soon as renewal has failed for
`renew_deadline` (which is shorter than `lease_duration`, so work stops before another
replica can take the lease). Every attempt (its GET and PUT together) is bounded by what
is left of the renew deadline, so a hung apiserver call cannot keep a replica leading
past it. Expiry is judged by the time *we observed* a change of the lease record, never
by comparing our clock with the holder's timestamps. On shutdown the lease is released
so a standby takes over at once. What it waits for is logged once per wait: the holder
it waits on (INFO), a namespace that does not exist or a refusal (ERROR), an apiserver
that does not answer (WARNING). Not for: what the leader does.
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
from stash.kube.tasks import cancel_and_wait

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
        #: What the current wait was last reported as (each kind of wait is logged once).
        self._reported: str | None = None

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Acquire, lead while the lease holds, repeat; until cancelled."""
        try:
            while True:
                await self._acquire()
                await self._lead(lead)
        finally:
            if self._observed is not None and self._observed[0] == self.identity:
                # Awaited, not shielded: a shielded release outlives a second
                # cancellation and is destroyed pending when the loop closes.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.renew_deadline):
                        await self._release()
            self._set_leader(False)

    async def _acquire(self) -> None:
        while True:
            if await self._attempt(self.renew_deadline):
                log.info("lease %s/%s acquired by %s", self.namespace, self.name, self.identity)
                return
            holder = self._observed[0] if self._observed else ""
            if holder and holder != self.identity:
                self._report(logging.INFO, f"held by {holder}", f"held by {holder}; waiting for it")
            await asyncio.sleep(self.retry_period)

    async def _attempt(self, budget: float) -> bool:
        """`try_acquire_or_renew`, given up (as failed) after `budget` seconds."""
        if budget <= 0:
            return False
        try:
            async with asyncio.timeout(budget):
                return await self.try_acquire_or_renew()
        except TimeoutError:
            why = f"not renewed: the apiserver did not answer within {budget:.1f}s"
            self._report(logging.WARNING, "not answered", why)
            return False

    async def _lead(self, lead: Callable[[], Awaitable[None]]) -> None:
        self._set_leader(True)
        work = asyncio.create_task(_as_coro(lead), name="leader work")
        last_renew = self.clock()
        try:
            while not work.done():
                done, _ = await asyncio.wait({work}, timeout=self.retry_period)
                if done:
                    break
                budget = last_renew + self.renew_deadline - self.clock()
                if await self._attempt(budget):
                    last_renew = self.clock()
                elif self.clock() - last_renew >= self.renew_deadline:
                    log.warning("lease %s/%s lost; stopping leader work", self.namespace, self.name)
                    break
        finally:
            await cancel_and_wait(work)
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
            except Conflict:
                return False
            except NotFound as exc:  # the namespace itself is missing
                why = f"cannot be created ({exc.message}); waiting for the namespace"
                self._report(logging.ERROR, "no namespace", why)
                return False
            except (KubeError, aiohttp.ClientError, TimeoutError) as exc:
                self._failed(exc)
                return False
            self._observe((self.identity, now_s))
            self._reported = None
            return True
        except (KubeError, aiohttp.ClientError, TimeoutError) as exc:
            self._failed(exc)
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
        except Conflict:
            return False
        except (KubeError, aiohttp.ClientError, TimeoutError) as exc:
            self._failed(exc)
            return False
        self._observe((self.identity, now_s))
        self._reported = None
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

    def _failed(self, exc: Exception) -> None:
        """Report a failed request once: a refusal is an ERROR, anything else a WARNING."""
        if isinstance(exc, KubeError) and exc.status in (401, 403):
            self._report(logging.ERROR, "refused", f"refused: {exc}")
        else:
            self._report(logging.WARNING, "unreachable", f"cannot be read or written: {exc}")

    def _report(self, level: int, kind: str, what: str) -> None:
        """Log what this replica waits for, once until the wait changes or ends."""
        if self._reported == kind:
            return
        self._reported = kind
        log.log(level, "lease %s/%s: %s", self.namespace, self.name, what)

    def _observe(self, record: tuple[str, str]) -> None:
        self._observed = record
        self._observed_at = self.clock()

    def _set_leader(self, value: bool) -> None:
        self.is_leader = value
        if self.on_change is not None:
            self.on_change(value)


async def _as_coro(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()
