"""Stale restic locks: which are provably stale, and removing exactly those.

What it is for: `stale_locks()`, the pure policy, and `remove_stale_locks()`, which
applies it to a repository. A lock is stale only when BOTH hold:

* it is older than `min_age` (restic refreshes a live lock every 5 minutes by writing
  a new one, so with the default of 10 minutes a lock whose owner is still running
  somewhere is never old enough, whatever the predicate below says), AND
* its owner is provably gone: it was taken on this host by a run of ours (`owned`,
  e.g. `RunLedger.may_own`: host names and PIDs repeat across pods) whose PID is no
  longer a running restic, OR the owning session is final (`session_final`, supplied
  by the caller, e.g. "the heartbeat of that executor belongs to a final session").

A lock whose owner is on this host and whose PID is still a running restic is never
stale. Nothing here ever removes all locks; `restic unlock --remove-all` stays a
person's explicit decision (`kubectl stash unlock`).

How a stale lock is removed: restic has no "remove this lock" command, only `unlock`
(its own rule: older than 30 minutes, or taken on the same host by a PID that is gone)
and `unlock --remove-all`. So:
* local backend: the lock file `<repo>/locks/<id>` is deleted directly;
* REST backend: `DELETE <url>/locks/<id>`, as restic itself does;
* other backends (s3, gcs, azure, swift, b2): `restic unlock`, which applies restic's
  own rule. That rule also removes a live lock of another pod with the same host name
  whose PID is not running here, so `restic unlock` runs only when every lock it would
  remove that way is one our policy found stale; otherwise nothing is removed and the
  stale locks are reported as kept.
A lock file's content never changes (refreshing writes a new ID), so deleting an ID
judged stale cannot remove a lock that has since been refreshed.

Not for: lock errors (`errors.RepositoryLocked`) or listing locks (`driver`).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from stash.restic.errors import ResticError
from stash.restic.models import LockInfo

if TYPE_CHECKING:
    from stash.restic.driver import Restic

__all__ = [
    "DEFAULT_MIN_AGE",
    "LockCleanup",
    "remove_stale_locks",
    "restic_alive",
    "stale_locks",
    "unlock_would_remove",
]

log = logging.getLogger("stash.restic")

RESTIC_STALE_AGE = timedelta(minutes=30)
"""restic's own stale timeout (`unlock` removes older locks)."""

DEFAULT_MIN_AGE = timedelta(minutes=10)
"""Twice restic's lock refresh interval (5 min): a live lock never gets this old."""

_LOCK_ID = re.compile(r"^[0-9a-f]{64}$")


def restic_alive(pid: int) -> bool:
    """Whether `pid` on this host is a running (not zombie) restic process.

    A PID reused by another program counts as gone; without /proc, any live process
    with that PID counts as restic (the safe answer).
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return True
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X") and comm == "restic"


def stale_locks(
    locks: Sequence[LockInfo],
    *,
    now: datetime,
    this_host: str,
    min_age: timedelta = DEFAULT_MIN_AGE,
    process_alive: Callable[[int], bool] = restic_alive,
    session_final: Callable[[LockInfo], bool] = lambda _lock: False,
    owned: Callable[[LockInfo], bool] = lambda _lock: False,
) -> list[LockInfo]:
    """The locks that are provably stale (see the module docstring for the rule)."""
    stale: list[LockInfo] = []
    for lock in locks:
        if lock.age(now) < min_age:
            continue
        local = lock.hostname == this_host
        if local and process_alive(lock.pid):
            continue
        if (local and owned(lock)) or session_final(lock):
            stale.append(lock)
    return stale


def unlock_would_remove(
    locks: Sequence[LockInfo],
    *,
    now: datetime,
    this_host: str,
    process_alive: Callable[[int], bool] = restic_alive,
) -> list[LockInfo]:
    """The locks `restic unlock` removes by its own rule: older than 30 minutes, or taken
    on a host of this name by a PID that is not running here."""
    return [
        lock
        for lock in locks
        if lock.age(now) >= RESTIC_STALE_AGE
        or (lock.hostname == this_host and not process_alive(lock.pid))
    ]


@dataclass(frozen=True)
class LockCleanup:
    """What `remove_stale_locks` did: locks removed, stale ones it could not remove."""

    removed: tuple[LockInfo, ...]
    stale_kept: tuple[LockInfo, ...]
    method: str


async def remove_stale_locks(
    restic: Restic,
    *,
    now: datetime | None = None,
    this_host: str | None = None,
    min_age: timedelta = DEFAULT_MIN_AGE,
    process_alive: Callable[[int], bool] = restic_alive,
    session_final: Callable[[LockInfo], bool] = lambda _lock: False,
    owned: Callable[[LockInfo], bool] = lambda _lock: False,
) -> LockCleanup:
    """Remove the repository's provably stale locks, and only those."""
    locks = await restic.locks()
    now = now or datetime.now(UTC)
    this_host = this_host or socket.gethostname()
    stale = stale_locks(
        locks,
        now=now,
        this_host=this_host,
        min_age=min_age,
        process_alive=process_alive,
        session_final=session_final,
        owned=owned,
    )
    provider = restic.target.provider
    if not stale:
        return LockCleanup((), (), "none")
    for lock in stale:
        log.info(
            "removing stale lock %s of %s (pid %d on %s, created %s)",
            lock.id[:8],
            restic.target.display,
            lock.pid,
            lock.hostname,
            lock.time.isoformat(),
        )
    if provider == "local":
        for lock in stale:
            _delete_local(restic.target.repository, lock.id)
        return LockCleanup(tuple(stale), (), "delete-file")
    if provider == "rest":
        for lock in stale:
            await _delete_rest(restic, lock.id)
        return LockCleanup(tuple(stale), (), "rest-delete")
    stale_ids = {lock.id for lock in stale}
    collateral = [
        lock
        for lock in unlock_would_remove(
            locks, now=now, this_host=this_host, process_alive=process_alive
        )
        if lock.id not in stale_ids and lock.age(now) < RESTIC_STALE_AGE
    ]
    if collateral:
        log.warning(
            "not running restic unlock on %s: it would also remove %d lock(s) of another "
            "pod named %s that may be live; the stale lock(s) stay until they are 30 "
            "minutes old or `kubectl stash unlock` removes them",
            restic.target.display,
            len(collateral),
            this_host,
        )
        return LockCleanup((), tuple(stale), "kept-ambiguous")
    await restic.unlock()
    remaining = set(await restic.lock_ids())
    removed = tuple(lock for lock in stale if lock.id not in remaining)
    kept = tuple(lock for lock in stale if lock.id in remaining)
    return LockCleanup(removed, kept, "restic-unlock")


def _checked_id(lock_id: str) -> str:
    if not _LOCK_ID.match(lock_id):
        raise ResticError(f"refusing to remove lock with malformed ID {lock_id!r}")
    return lock_id


def _delete_local(repository: str, lock_id: str) -> None:
    path = Path(repository) / "locks" / _checked_id(lock_id)
    path.unlink(missing_ok=True)  # missing: released meanwhile


async def _delete_rest(restic: Restic, lock_id: str) -> None:
    import aiohttp

    parts = urlsplit(restic.target.repository.removeprefix("rest:"))
    host = parts.netloc.rpartition("@")[2]
    headers = {}
    if parts.username:
        # UTF-8, as restic (Go) sends it; aiohttp's BasicAuth would default to latin-1.
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
    base = urlunsplit(parts._replace(netloc=host)).rstrip("/")
    url = f"{base}/locks/{_checked_id(lock_id)}"
    opts = restic.target.options
    tls: ssl.SSLContext | bool = True
    if "--insecure-tls" in opts:
        tls = False
    elif "--cacert" in opts:
        tls = ssl.create_default_context(cafile=opts[opts.index("--cacert") + 1])
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.delete(url, headers=headers, ssl=tls) as resp,
    ):
        if resp.status not in (200, 204, 404):
            raise ResticError(
                f"the REST server refused to delete lock {lock_id[:8]}: HTTP {resp.status}",
                hint="check the REST server's credentials and that it is not read-only",
            )
