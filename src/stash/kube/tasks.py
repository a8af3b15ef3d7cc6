"""Stopping asyncio tasks without swallowing the stopper's own cancellation.

What it is for: `cancel_and_wait(*tasks)` cancels tasks a component owns and waits until
each has finished, whatever it raised. The usual `task.cancel()` followed by `await task`
under `suppress(CancelledError)` has a trap: if the *caller* is cancelled while it waits
(the operator being shut down while its leader work stops after a lost lease), that
cancellation is suppressed too, the caller carries on, and whoever stopped it waits
forever. Here the caller's cancellation always propagates.

Not for: supervising or restarting tasks (`supervisor`), or deciding when to stop them.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel `tasks` and wait until each has finished; their errors are theirs (dropped
    here, so log them before if they matter). A cancellation of the caller while it
    waits is raised, never swallowed."""
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    # asyncio.wait never raises what the tasks raised; it raises CancelledError only
    # when the task calling it is cancelled.
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
