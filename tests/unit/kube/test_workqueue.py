"""The work queue never hands one key to two workers, never loses a re-added key,
de-duplicates, and backs failures off exponentially under a global rate limit."""

from __future__ import annotations

import asyncio

import pytest

from stash.kube.workqueue import Backoff, ShutDown, TokenBucket, WorkQueue


async def test_duplicate_adds_are_processed_once() -> None:
    q = WorkQueue("t")
    for _ in range(5):
        q.add("ns/a")
    q.add("ns/b")
    assert len(q) == 2
    assert await q.get() == "ns/a"
    assert await q.get() == "ns/b"


async def test_key_re_added_while_processing_is_handed_out_again_after_done() -> None:
    q = WorkQueue("t")
    q.add("k")
    key = await q.get()
    q.add("k")  # an event arrives while a worker holds the key
    assert len(q) == 0, "must not be handed to a second worker while in flight"
    q.done(key)
    assert len(q) == 1
    assert await asyncio.wait_for(q.get(), 1) == "k"


async def test_concurrent_workers_never_share_a_key() -> None:
    q = WorkQueue("t")
    active: set[str] = set()
    overlaps: list[str] = []
    processed: list[str] = []
    enough = asyncio.Event()

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            await asyncio.sleep(0.001)
            if len(processed) < 200:
                q.add(key)  # keep the key hot
            processed.append(key)
            if len(processed) >= 200:
                enough.set()
            active.discard(key)
            q.done(key)

    for i in range(3):
        q.add(f"k{i}")
    workers = [asyncio.create_task(worker()) for _ in range(4)]
    await asyncio.wait_for(enough.wait(), 10)
    q.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 2)
    assert overlaps == []


async def test_add_after_delays_and_earliest_request_wins() -> None:
    q = WorkQueue("t")
    q.add_after("k", 10)
    q.add_after("k", 0.05)
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), 1) == "k"


def test_backoff_doubles_per_failure_up_to_cap_and_forget_resets() -> None:
    b = Backoff(base=0.01, cap=0.1)
    assert [b.next_delay("k") for _ in range(6)] == pytest.approx(
        [0.01, 0.02, 0.04, 0.08, 0.1, 0.1]
    )
    assert b.next_delay("other") == pytest.approx(0.01)
    b.forget("k")
    assert b.next_delay("k") == pytest.approx(0.01)


def test_token_bucket_allows_burst_then_spaces_requests() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0, 0, 0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    now[0] = 10.0
    assert bucket.reserve() == 0


async def test_shutdown_releases_waiting_workers() -> None:
    q = WorkQueue("t")
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiter, 1)


def test_a_key_failing_thousands_of_times_keeps_the_capped_delay() -> None:
    # 0.005 * 2**n overflowed a float after ~1,000 failures, killing the worker
    backoff = Backoff(base=0.005, cap=300.0)
    delays = [backoff.next_delay("ns/broken") for _ in range(5000)]
    assert delays[-1] == 300.0
    assert backoff.failures("ns/broken") == 5000
