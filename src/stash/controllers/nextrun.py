"""`status.nextBackupTime` of a backup invoker, read from the cron engine.

What it is for: after an invoker's reconcile registers its schedule, `next_run()` asks
the cron engine (`stash.scheduler.CronEngine`, the one that fires) when the invoker's job
runs next, in the wire format of a `metav1.Time`, and how long until the reconciler
should look again so the field moves on right after that tick. Paused or invalid
invokers have no next run (the field is removed: `without_unset`).

Not for: computing fire times (stash.cron) or firing (stash.scheduler).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stash.scheduler import CronEngine

__all__ = ["AFTER_TICK", "NextRun", "earliest", "next_run", "without_unset"]

#: Look again this long after the tick, when the engine has moved its job on: a few
#: seconds, so that the status writes of hundreds of invokers ticking at once do not
#: compete with the creation of their sessions (the field is that much late).
AFTER_TICK = 5.0


@dataclass(frozen=True)
class NextRun:
    """The invoker's next fire time as the status writes it, and when to look again."""

    wire: str | None
    recheck_after: float | None


def next_run(
    engine: CronEngine,
    key: str,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> NextRun:
    """The engine's next fire time for `key` (None: paused, unregistered, engine stopped)."""
    when = engine.next_fire_time(key)
    if when is None:
        return NextRun(None, None)
    wire = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    wait = max((when - now()).total_seconds(), 0.0) + AFTER_TICK
    return NextRun(wire, wait)


def earliest(*delays: float | None) -> float | None:
    """The shortest of the given requeue delays (None: none asked for)."""
    given = [d for d in delays if d is not None]
    return min(given) if given else None


def without_unset(status: dict[str, Any]) -> dict[str, Any]:
    """`status` without the fields set to None (a removed next run)."""
    return {k: v for k, v in status.items() if v is not None}
