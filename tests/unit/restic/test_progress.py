"""Progress events as an async iterator that ends with the run."""

from __future__ import annotations

import asyncio

from stash.restic.models import BackupProgress
from stash.restic.progress import ProgressStream


async def test_stream_yields_events_and_ends_with_the_task() -> None:
    stream = ProgressStream()

    async def fake_backup() -> str:
        for pct in (0.1, 0.5, 1.0):
            stream(BackupProgress(percent_done=pct))
            await asyncio.sleep(0)
        return "snap"

    task = stream.follow(asyncio.create_task(fake_backup()))
    seen = [event.percent_done async for event in stream]
    assert seen == [0.1, 0.5, 1.0]
    assert await task == "snap"


async def test_slow_reader_gets_the_latest_events() -> None:
    stream = ProgressStream(maxsize=2)
    for pct in (0.1, 0.2, 0.3, 0.4):
        stream(BackupProgress(percent_done=pct))
    stream.close()
    stream(BackupProgress(percent_done=0.9))  # after close: ignored
    assert [e.percent_done async for e in stream] == [0.4]
