"""Running one restic process: its own process group, streamed output, clean stops.

What it is for: `run()` starts restic (or its `nice`/`ionice` wrapper) with
`asyncio.create_subprocess_exec` in a new session, so restic and anything it starts
(the `--stdin-from-command` dump) form one process group; streams stdout line by line
to a handler and keeps a bounded tail of stderr; and stops the whole group when the
caller is cancelled: SIGTERM (restic then releases its lock and exits 130), SIGKILL
after a grace period, and always waits for the process so no zombie is left. A lock
left behind by a SIGKILL is for the stale-lock policy (`locks`).

`RetryWatch` cuts restic's own backend retries short. restic retries a failing backend
for up to 15 minutes, also when the bucket does not exist or the server is down at
start; an operator should say so within seconds. A permanent error (no such bucket,
credentials refused, invalid bucket name) stops restic at its first retry; any other
error while opening the repository (unreachable server, ...) stops it after `budget`
seconds of retrying. Retries later in a run (uploading data) are left to restic.

Not for: building arguments or parsing results (`driver`), or classifying errors
(`errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from stash.kube.lines import read_lines
from stash.restic.errors import (
    BackendAuthFailed,
    BackendUnreachable,
    BucketNotFound,
    InvalidBackend,
    ResticError,
    WrongPassword,
    classify,
)
from stash.restic.ledger import RunLedger

__all__ = ["Completed", "LineHandler", "RetryWatch", "run"]

log = logging.getLogger("stash.restic")

LineHandler = Callable[[bytes], None]
"""Called with each stdout line (without the newline)."""

_CHUNK = 1 << 16
_STDERR_TAIL = 256 << 10
#: Longest line kept whole; a longer one is cut (restic's JSON lines are far shorter).
MAX_LINE = 4 << 20
#: Most stdout kept for a command whose output is parsed at the end (`snapshots --json`
#: of a very large repository is a few MiB); past it the run fails instead of growing.
MAX_STDOUT = 256 << 20


@dataclass(frozen=True)
class Completed:
    """A finished restic run: exit code, stdout (unless streamed), stderr tail."""

    exit_code: int
    stdout: bytes
    stderr: str


_RETRY = re.compile(
    r"^(?P<op>\w+)\((?P<what>[^)]*)\) returned error, retrying after (?P<delay>\S+): "
    r"(?P<error>.*)$"
)
_PERMANENT = (BucketNotFound, BackendAuthFailed, WrongPassword, InvalidBackend)


class RetryWatch:
    """Decides, from restic's "retrying" stderr lines, when to stop waiting for it.

    `feed(line)` returns the error to raise (and restic is stopped), or None. Opening
    the repository means operations on the config, keys and locks files.
    """

    def __init__(self, budget: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._first: float | None = None

    def feed(self, line: str) -> ResticError | None:
        """Look at one stderr line; return an error if restic should be stopped."""
        match = _RETRY.match(line.strip())
        if match is None:
            return None
        error = classify(None, match["error"])
        if isinstance(error, _PERMANENT):
            return error
        opening = match["what"].startswith(("<config", "<key", "<lock"))
        if not opening or self.budget is None:
            return None
        now = self._clock()
        if self._first is None:
            self._first = now
        if now - self._first >= self.budget:
            waited = now - self._first
            kind = type(error) if isinstance(error, BackendUnreachable) else ResticError
            return kind(
                f"{error.message} (still failing after {waited:.0f}s of retries)",
                hint=error.hint,
            )
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _stop(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after `grace` seconds, and reap the process."""
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            log.warning("restic pid %d ignored SIGTERM for %.0fs; killing it", proc.pid, grace)
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()


class _Run:
    """One started process: its output pumps, its stderr tail and why it was stopped."""

    def __init__(
        self, proc: asyncio.subprocess.Process, watch: RetryWatch | None, grace: float
    ) -> None:
        self.proc = proc
        self.watch = watch
        self.grace = grace
        self.stdout = bytearray()
        self.tail: deque[str] = deque()
        self.tail_size = 0
        self.aborted: list[ResticError] = []

    def abort(self, error: ResticError) -> None:
        """Stop the process group for `error`: SIGTERM, SIGKILL after the grace period."""
        self.aborted.append(error)
        _signal_group(self.proc.pid, signal.SIGTERM)

        def kill_if_alive() -> None:
            if self.proc.returncode is None:
                _signal_group(self.proc.pid, signal.SIGKILL)

        asyncio.get_running_loop().call_later(self.grace, kill_if_alive)

    async def pump_stdout(self, on_line: LineHandler | None) -> None:
        """Hand stdout over line by line, or keep it (bounded by `MAX_STDOUT`)."""
        assert self.proc.stdout is not None
        if on_line is not None:
            async for line in read_lines(self.proc.stdout, limit=MAX_LINE, cut=True):
                on_line(line)
            return
        while chunk := await self.proc.stdout.read(_CHUNK):
            if len(self.stdout) + len(chunk) > MAX_STDOUT:
                self.abort(ResticError(f"restic wrote more than {MAX_STDOUT >> 20} MiB to stdout"))
                return
            self.stdout.extend(chunk)

    async def pump_stderr(self) -> None:
        """Keep a bounded tail of stderr and let the retry watch judge each line."""
        assert self.proc.stderr is not None
        async for raw in read_lines(self.proc.stderr, limit=MAX_LINE, cut=True):
            text = raw.decode(errors="replace")
            self.tail.append(text)
            self.tail_size += len(text) + 1
            while self.tail_size > _STDERR_TAIL and len(self.tail) > 1:
                self.tail_size -= len(self.tail.popleft()) + 1
            if self.watch is not None and not self.aborted:
                error = self.watch.feed(text)
                if error is not None:
                    self.abort(error)

    async def feed_stdin(self, data: bytes) -> None:
        """Write `data` to stdin and close it (a process that stops reading is fine)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
        self.proc.stdin.close()


async def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    on_line: LineHandler | None = None,
    stdin: bytes | None = None,
    watch: RetryWatch | None = None,
    grace: float = 10.0,
    cwd: str | None = None,
    ledger: RunLedger | None = None,
) -> Completed:
    """Run `argv` to completion and return its exit code and output.

    With `on_line`, stdout is handed over line by line and not kept. Cancelling the
    calling task stops the process group (see module docstring) before the
    cancellation propagates. If `watch` decides to stop restic, its error is raised.
    With a `ledger`, the run is recorded while it lasts and kept when restic was
    killed (its lock may remain).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    if ledger is not None:
        ledger.started(proc.pid)
    running = _Run(proc, watch, grace)
    try:
        jobs = [running.pump_stdout(on_line), running.pump_stderr()]
        if stdin is not None:
            jobs.append(running.feed_stdin(stdin))
        await asyncio.gather(*jobs)
        exit_code = await proc.wait()
    except BaseException:
        try:
            await asyncio.shield(_stop(proc, grace))
        except asyncio.CancelledError:
            # Cancelled again while stopping: no more waiting, but asyncio's child
            # watcher still reaps the process once SIGKILL has done its work.
            _signal_group(proc.pid, signal.SIGKILL)
        raise
    finally:
        # Anything restic left running in its group (a dump's own children) goes too.
        _signal_group(proc.pid, signal.SIGKILL)
        if ledger is not None and proc.returncode is not None and proc.returncode >= 0:
            ledger.ended(proc.pid)  # exited by itself (or on SIGTERM): lock released
    if running.aborted:
        raise running.aborted[0]
    return Completed(exit_code, bytes(running.stdout), "\n".join(running.tail))
