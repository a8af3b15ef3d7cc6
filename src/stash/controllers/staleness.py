"""Stale invokers: the leader looks for backups that stopped succeeding (docs/hooks.md).

What it is for: `StaleInvokerWatch`, run by the leader next to the controllers. Every
`stale_check_interval` seconds it reads the caches — every BackupConfiguration and
BackupBatch that is not paused (Ready or not: an invoker that cannot run is exactly what
this is for) and its sessions — and, when no backup succeeded within the schedule's
period plus the configured `staleAfter` (`stash.notifications.overdue_period`), sends
`InvokerStale` once for that period. It runs whether or not anything else happens: a
schedule that never fires, an operator that was down, or sessions that never start are
all found.

What "once per period" rests on: the periods already reported, by invoker, in memory (a
new leader may report the current period once more).

Not for: delivering (`stash.notifications`), or session ends (`notify`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from stash.api import GROUP
from stash.controllers.context import ControllerContext
from stash.cron import CronError, parse_schedule
from stash.kube.client import JSON
from stash.notifications import Notification, overdue_period

__all__ = ["StaleInvokerWatch"]

log = logging.getLogger(__name__)


def _time(stamp: object) -> dt.datetime | None:
    if not stamp:
        return None
    try:
        return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None


class StaleInvokerWatch:
    """The leader's periodic look for stale invokers (module docstring)."""

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.reported: dict[str, dt.datetime] = {}
        self.last_success: dict[str, dt.datetime] = {}

    async def run(self) -> None:
        """Check, then wait `stale_check_interval`, until cancelled."""
        while True:
            try:
                await self.check()
            except Exception:  # a bad object must not stop the watch
                log.exception("looking for stale invokers failed; trying again later")
            await asyncio.sleep(self.ctx.settings.stale_check_interval)

    def _invokers(self) -> list[tuple[str, JSON]]:
        caches = self.ctx.caches
        found = [("BackupConfiguration", o) for o in caches.backupconfigurations.list()]
        if caches.backupbatches is not None:
            found += [("BackupBatch", o) for o in caches.backupbatches.list()]
        return found

    def _since(self, key: str, obj: JSON) -> dt.datetime:
        """The invoker's last successful backup we know of, else its creation."""
        best = self.last_success.get(key)
        for session in self.ctx.caches.backupsessions.by_index("invoker", key):
            if (session.get("status") or {}).get("phase") != "Succeeded":
                continue
            created = _time(session["metadata"].get("creationTimestamp"))
            if created is not None and (best is None or created > best):
                best = created
        if best is not None:
            self.last_success[key] = best
            return best
        return _time(obj["metadata"].get("creationTimestamp")) or self.ctx.now()

    async def check(self) -> int:
        """One look; the number of invokers reported stale now."""
        notifier = self.ctx.notifier
        if notifier is None:
            return 0
        config = await notifier.config()
        if not any(n.wants("InvokerStale") for n in config.notifiers):
            return 0
        slack = dt.timedelta(seconds=config.stale_after)
        now = self.ctx.now()
        sent = 0
        seen: set[str] = set()
        for kind, obj in self._invokers():
            meta, spec = obj["metadata"], obj.get("spec") or {}
            key = f"{kind}/{meta['namespace']}/{meta['name']}"
            seen.add(key)
            if spec.get("paused") or meta.get("deletionTimestamp") or not spec.get("schedule"):
                continue
            try:
                schedule = parse_schedule(spec["schedule"], self.ctx.settings.default_timezone)
            except CronError:
                continue  # ValidationPassed=False says so already
            since = self._since(key, obj)
            period = overdue_period(schedule, since, now, slack)
            if period is None:
                self.reported.pop(key, None)
                continue
            if self.reported.get(key) == period:
                continue
            self.reported[key] = period
            sent += 1
            notifier.notify(_stale(kind, meta, since, period, spec["schedule"], config.stale_after))
        for gone in set(self.reported) - seen:
            del self.reported[gone]
        return sent


def _stale(
    kind: str, meta: JSON, since: dt.datetime, period: dt.datetime, schedule: str, slack: float
) -> Notification:
    ns, name = meta["namespace"], meta["name"]
    text = f"{kind} {ns}/{name} has had no successful backup since {since.isoformat()}"
    details = {
        "schedule": schedule,
        "lastSuccess": since.isoformat(),
        "overduePeriod": period.isoformat(),
        "staleAfter": f"{slack:g}s",
        "apiGroup": GROUP,
    }
    return Notification("InvokerStale", kind, ns, name, text, details)
