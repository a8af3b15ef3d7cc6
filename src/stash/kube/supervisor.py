"""Supervision of long-lived tasks (informers): restart one that dies, say which are down.

What it is for: a process runs loops that should never end (an informer lists and
watches until cancelled, and handles apiserver failures itself). Should one still end
with an unexpected exception (a bug, an object it cannot handle), `Supervisor` logs it
with its traceback at ERROR, reports the task in `problems()` (the operator's /healthz
answers 503 with it) and starts it again after a capped, growing delay. A task counts as
down from its failure until its `progress` marker changes (for an informer: it listed
again), so one that dies again at once stays reported.

Not for: retrying requests (the informer does) or deciding what a process does when
something is down (the caller reads `problems()`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stash.kube.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass
class _Down:
    error: str
    failures: int
    marker: object


class Supervisor:
    """Runs named coroutines; restarts one that fails (module docstring)."""

    def __init__(self, *, first_delay: float = 0.5, max_delay: float = 30.0) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._down: dict[str, _Down] = {}
        self._progress: dict[str, Callable[[], object]] = {}

    def spawn(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        progress: Callable[[], object] = lambda: None,
    ) -> None:
        """Run `run()` as task `name` until `close()`, starting it again when it fails."""
        self._progress[name] = progress
        self._tasks[name] = asyncio.create_task(self._keep(name, run), name=name)

    def problems(self) -> dict[str, str]:
        """What is down now, by task name: how often it failed in a row and why."""
        out: dict[str, str] = {}
        for name, down in list(self._down.items()):
            if self._progress[name]() != down.marker:
                del self._down[name]  # it made progress since: up again
                continue
            out[name] = f"failed {down.failures} time(s) in a row: {down.error}"
        return out

    async def close(self) -> None:
        """Cancel every task and wait for them."""
        await cancel_and_wait(*self._tasks.values())

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await run()
                log.error("%s ended; starting it again", name)
                error = "it ended"
            except Exception as exc:
                log.exception("%s died; starting it again", name)
                error = f"{type(exc).__name__}: {exc}"
            marker = self._progress[name]()
            down = self._down.get(name)
            in_a_row = down is not None and down.marker == marker
            failures = down.failures + 1 if down is not None and in_a_row else 1
            self._down[name] = _Down(error, failures, marker)
            delay = min(self.max_delay, self.first_delay * 2 ** min(failures - 1, 16))
            await asyncio.sleep(delay)
