"""Create a BackupSession for an invoker, idempotently (cron ticks, retries, triggers)."""

from __future__ import annotations

import datetime as dt

from stash import metrics
from stash.contract.resources import BACKUPSESSIONS
from stash.contract.sessions import new_backup_session
from stash.kube.client import JSON, Conflict, Kube


async def create_backup_session(
    kube: Kube, invoker: JSON, when: dt.datetime, retry_left: int | None = None
) -> str:
    """Create `<invoker>-<unix(when)>`; an existing session of that name is success."""
    body = new_backup_session(invoker, when, retry_left)
    name = str(body["metadata"]["name"])
    try:
        await kube.create(BACKUPSESSIONS, body, body["metadata"]["namespace"])
    except Conflict as exc:
        if not exc.already_exists:
            raise
        return name
    meta = invoker["metadata"]
    metrics.SCHEDULED_SESSIONS.labels(
        meta["namespace"], invoker.get("kind", ""), meta["name"]
    ).inc()
    return name
