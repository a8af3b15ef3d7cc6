"""Progress of a running backup or restore as an async iterator.

What it is for: `ProgressStream`, a callback (pass it as `on_progress=`) that is also
an async iterator of the events it received, ending when the run it `follow`s ends:

    stream = ProgressStream()
    run = stream.follow(asyncio.create_task(restic.backup(paths, on_progress=stream)))
    async for event in stream:
        report(event.percent_done)
    summary = await run

Not for: parsing restic's status lines (`driver` does) or rate limiting (restic's
RESTIC_PROGRESS_FPS does). Only the latest `maxsize` events are kept if the reader
falls behind: progress is a gauge, not a log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from stash.restic.models import BackupProgress, RestoreProgress

__all__ = ["ProgressEvent", "ProgressStream"]

ProgressEvent = BackupProgress | RestoreProgress
T = TypeVar("T")


class ProgressStream:
    """Collects progress events from a callback and yields them to an async reader."""

    def __init__(self, maxsize: int = 100) -> None:
        self._queue: asyncio.Queue[ProgressEvent | None] = asyncio.Queue(maxsize)
        self._closed = False

    def __call__(self, event: ProgressEvent) -> None:
        """Receive one event (the `on_progress` callback)."""
        if self._closed:
            return
        if self._queue.full():
            self._queue.get_nowait()  # drop the oldest: only the latest matters
        self._queue.put_nowait(event)

    def close(self) -> None:
        """End the iteration after the events already received."""
        if not self._closed:
            self._closed = True
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    def follow(self, task: asyncio.Task[T]) -> asyncio.Task[T]:
        """Close the stream when `task` finishes (however it finishes); return `task`."""
        task.add_done_callback(lambda _t: self.close())
        return task

    async def __aiter__(self) -> AsyncIterator[ProgressEvent]:
        while (event := await self._queue.get()) is not None:
            yield event
