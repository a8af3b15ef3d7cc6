"""A supervised task that dies is reported and started again; it is reported until it
makes progress after the restart."""

from __future__ import annotations

import asyncio
import logging

import pytest

from stash.kube.supervisor import Supervisor


async def test_a_task_that_dies_is_reported_restarted_and_cleared_once_it_progresses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    progress = 0
    die = asyncio.Event()
    restarted = asyncio.Event()

    async def informer() -> None:
        nonlocal runs, progress
        runs += 1
        if runs > 1:
            restarted.set()
        await die.wait()
        die.clear()
        raise RuntimeError("poisoned object")

    sup = Supervisor(first_delay=0.05)
    sup.spawn("informer secrets", informer, progress=lambda: progress)
    await asyncio.sleep(0.01)
    assert sup.problems() == {}
    die.set()
    await asyncio.wait_for(restarted.wait(), 2)
    problems = sup.problems()
    assert "RuntimeError: poisoned object" in problems["informer secrets"]
    assert any(
        r.levelno == logging.ERROR and "informer secrets died" in r.getMessage()
        for r in caplog.records
    )
    progress += 1  # the restarted informer listed again
    assert sup.problems() == {}
    await sup.close()
