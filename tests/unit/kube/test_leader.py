"""Leader election against an in-memory Lease store that can hang or refuse: a hung
renewal stops the leader's work before its lease could expire, and every wait is said
once (the holder at INFO, a missing namespace at ERROR)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from stash.kube.client import JSON, Conflict, NotFound, Resource
from stash.kube.leader import LeaderElector


class FakeLeases:
    """One Lease in memory; `hang` makes every request wait forever (a hung apiserver
    connection); `namespace_missing` answers as the apiserver does for a missing one."""

    def __init__(self) -> None:
        self.lease: JSON | None = None
        self.rv = 0
        self.hang = False
        self.namespace_missing = False
        self.requests = 0

    async def _maybe_hang(self) -> None:
        self.requests += 1
        if self.hang:
            await asyncio.Event().wait()

    async def get(self, res: Resource, name: str, ns: str | None = None) -> JSON:
        await self._maybe_hang()
        if self.lease is None:
            raise NotFound(404, "NotFound", f'leases "{name}" not found')
        return {**self.lease, "spec": dict(self.lease["spec"])}

    async def create(self, res: Resource, obj: JSON, ns: str | None = None) -> JSON:
        await self._maybe_hang()
        if self.namespace_missing:
            raise NotFound(404, "NotFound", f'namespaces "{ns}" not found')
        if self.lease is not None:
            raise Conflict(409, "AlreadyExists", "exists")
        self.rv += 1
        self.lease = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        return self.lease

    async def replace(self, res: Resource, obj: JSON, ns: str | None = None, **_: Any) -> JSON:
        await self._maybe_hang()
        assert self.lease is not None
        if obj["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "changed")
        self.rv += 1
        self.lease = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.rv)}}
        return self.lease


def elector(store: FakeLeases, identity: str = "me") -> LeaderElector:
    return LeaderElector(
        store,  # type: ignore[arg-type]
        "stash",
        "stash-operator",
        identity,
        lease_duration=3.0,
        renew_deadline=1.0,
        retry_period=0.2,
    )


async def test_a_hung_renewal_stops_the_leader_work_before_its_lease_could_expire() -> None:
    store = FakeLeases()
    el = elector(store)
    leading, stopped = asyncio.Event(), asyncio.Event()

    async def lead() -> None:
        leading.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    runner = asyncio.create_task(el.run(lead))
    await asyncio.wait_for(leading.wait(), 5)
    store.hang = True  # the next GET never answers
    # Another replica may take the lease once it has looked unchanged for
    # lease_duration (3 s); this one must have stopped working by then.
    await asyncio.wait_for(stopped.wait(), el.lease_duration)
    assert not el.is_leader
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


async def test_a_missing_namespace_is_one_error_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeLeases()
    store.namespace_missing = True
    el = elector(store)
    caplog.set_level(logging.INFO, logger="stash.kube.leader")
    leading = asyncio.Event()

    async def lead() -> None:
        leading.set()
        await asyncio.Event().wait()

    runner = asyncio.create_task(el.run(lead))
    await asyncio.sleep(6 * el.retry_period)  # several attempts
    assert store.requests >= 6
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert 'namespaces "stash" not found' in errors[0].getMessage()
    assert "stash/stash-operator" in errors[0].getMessage()
    store.namespace_missing = False  # someone created it
    await asyncio.wait_for(leading.wait(), 5)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


async def test_a_standby_says_once_whom_it_waits_for(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeLeases()
    first = elector(store, "first")
    leading = asyncio.Event()

    async def lead() -> None:
        leading.set()
        await asyncio.Event().wait()

    leader = asyncio.create_task(first.run(lead))
    await asyncio.wait_for(leading.wait(), 5)
    caplog.set_level(logging.INFO, logger="stash.kube.leader")
    standby = asyncio.create_task(elector(store, "second").run(lead))
    await asyncio.sleep(1.5)  # several retry periods
    waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert waits == ["lease stash/stash-operator: held by first; waiting for it"]
    for task in (standby, leader):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_cancelled_leader_hands_its_lease_back_and_leaves_no_task_behind() -> None:
    store = FakeLeases()
    el = elector(store)
    leading = asyncio.Event()

    async def lead() -> None:
        leading.set()
        await asyncio.Event().wait()

    runner = asyncio.create_task(el.run(lead))
    await asyncio.wait_for(leading.wait(), 5)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] is None

    # Cancelled while the apiserver hangs: the release is given up within the
    # renew deadline, not left running (it would be destroyed pending at shutdown).
    store2 = FakeLeases()
    el2 = elector(store2)
    leading.clear()
    runner = asyncio.create_task(el2.run(lead))
    await asyncio.wait_for(leading.wait(), 5)
    store2.hang = True
    before = set(asyncio.all_tasks())
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, el2.renew_deadline + 2)
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert left == [], left


async def test_an_operator_stopped_while_its_lost_leadership_winds_down_stops() -> None:
    # The lease is lost (the apiserver hangs) and the leader work takes a moment to
    # wind down; the operator is shut down meanwhile. That shutdown must end the
    # elector, not be swallowed while it waits for the work (it then went back to
    # campaigning against a hung apiserver and the shutdown waited forever).
    store = FakeLeases()
    el = elector(store)
    leading, winding_down = asyncio.Event(), asyncio.Event()

    async def lead() -> None:
        leading.set()
        try:
            await asyncio.Event().wait()
        finally:
            winding_down.set()
            await asyncio.sleep(0.5)  # e.g. a session's status being written

    runner = asyncio.create_task(el.run(lead))
    await asyncio.wait_for(leading.wait(), 5)
    store.hang = True
    await asyncio.wait_for(winding_down.wait(), el.lease_duration)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner, 10)
