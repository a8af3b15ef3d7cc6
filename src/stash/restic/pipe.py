"""Two processes joined by an OS pipe: `restic dump` feeding a database's load tool.

What it is for: `pipe_into()` starts the producer with its stdout on a pipe and the
consumer with its stdin on the other end, so the data never passes through Python (memory
stays flat whatever the dump's size) nor touches the disk; it returns both exit codes and
the tails of both stderrs. Each process gets its own process group, killed and reaped
when the caller is cancelled.

Not for: deciding what a failure means (the driver and the agent do).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Piped", "pipe_into"]

TAIL_LINES = 40


@dataclass(frozen=True)
class Piped:
    """How both ends of a pipe ended."""

    producer_exit: int
    producer_stderr: str
    consumer_exit: int
    consumer_stderr: str


async def _tail(stream: asyncio.StreamReader | None) -> str:
    lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    if stream is None:
        return ""
    async for raw in stream:
        lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
    return "\n".join(lines)


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _reap(procs: list[asyncio.subprocess.Process]) -> None:
    """Kill each process group and wait for the processes to be reaped, so nothing of
    them is left for after the event loop closes (a cancelled agent would print "Event
    loop is closed" on its way out); cancelled again meanwhile, it stops waiting."""
    for proc in procs:
        _kill(proc)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(asyncio.gather(*(proc.wait() for proc in procs)))


async def pipe_into(
    producer: Sequence[str],
    producer_env: Mapping[str, str],
    consumer: Sequence[str],
    consumer_env: Mapping[str, str],
) -> Piped:
    """Run `producer | consumer` to completion (module docstring)."""
    read_end, write_end = os.pipe()
    procs: list[asyncio.subprocess.Process] = []
    try:
        procs.append(
            await asyncio.create_subprocess_exec(
                *producer,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_end,
                stderr=asyncio.subprocess.PIPE,
                env=dict(producer_env),
                start_new_session=True,
            )
        )
        procs.append(
            await asyncio.create_subprocess_exec(
                *consumer,
                stdin=read_end,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=dict(consumer_env),
                start_new_session=True,
            )
        )
    except BaseException:
        await _reap(procs)
        raise
    finally:
        os.close(read_end)
        os.close(write_end)
    first, second = procs
    try:
        first_err, second_err = await asyncio.gather(_tail(first.stderr), _tail(second.stderr))
        first_exit, second_exit = await first.wait(), await second.wait()
    except BaseException:
        await _reap(procs)
        raise
    return Piped(first_exit, first_err, second_exit, second_err)
