"""The restic runs a pod started that may have left a lock behind.

What it is for: telling this pod's own stale locks from another pod's live ones. restic
records only host name, PID and time in a lock, and two pods may share a host name (two
`postgres-0` in different namespaces backing up into one repository) and, in their own
PID namespaces, even a PID. So "same host name, PID not running here" proves nothing.
`RunLedger` records each restic process the agent starts (PID and start time) in a file
in the pod's scratch directory (an emptyDir, which outlives a container restart) and
forgets it when restic exits by itself (it then released its lock). What is left are
runs that were killed: only their locks (same host name, same PID, taken after the run
started) are this pod's to remove.

Listeners (the heartbeat Lease) hear of every change at once, so the PIDs a crashed
executor was running are published before restic has even opened the repository.

Not for: judging locks (`locks`) or removing them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stash.restic.models import LockInfo

__all__ = ["LEDGER_FILE", "ResticRun", "RunLedger"]

log = logging.getLogger("stash.restic")

#: File name of the ledger in the scratch directory.
LEDGER_FILE = "restic-runs.json"

_INSTANCES: dict[Path, RunLedger] = {}

#: Clock difference tolerated between the agent and restic writing the lock time.
CLOCK_SLACK = timedelta(seconds=5)


@dataclass(frozen=True)
class ResticRun:
    """One restic process started by this pod."""

    pid: int
    started: datetime


class RunLedger:
    """restic runs of this pod that did not end by themselves (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listeners: list[Callable[[], None]] = []

    @classmethod
    def at(cls, path: Path) -> RunLedger:
        """The one ledger object of this process for `path` (listeners are per object)."""
        ledger = _INSTANCES.get(path)
        if ledger is None:
            ledger = _INSTANCES[path] = cls(path)
        return ledger

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every change (a run started or ended)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling `listener`."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def runs(self) -> list[ResticRun]:
        """The runs recorded (an unreadable ledger counts as empty: proves nothing)."""
        try:
            docs = json.loads(self.path.read_text())
            return [
                ResticRun(int(d["pid"]), datetime.fromisoformat(str(d["started"]))) for d in docs
            ]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "restic run ledger %s unreadable (%s); treating it as empty", self.path, exc
            )
            return []

    def pids(self) -> list[int]:
        """PIDs of the recorded runs."""
        return sorted({r.pid for r in self.runs()})

    def started(self, pid: int, at: datetime | None = None) -> None:
        """Record a restic process that was just started."""
        runs = [r for r in self.runs() if r.pid != pid]
        runs.append(ResticRun(pid, at or datetime.now(UTC)))
        self._write(runs)

    def ended(self, pid: int) -> None:
        """Forget a run that ended by itself (restic released its lock)."""
        runs = self.runs()
        kept = [r for r in runs if r.pid != pid]
        if len(kept) != len(runs):
            self._write(kept)

    def may_own(self, lock: LockInfo) -> bool:
        """True when `lock` can be one of this pod's killed runs: same PID, taken after
        that run started. (The host name is checked by the caller.)"""
        return any(r.pid == lock.pid and lock.time >= r.started - CLOCK_SLACK for r in self.runs())

    def _write(self, runs: list[ResticRun]) -> None:
        docs = [{"pid": r.pid, "started": r.started.isoformat()} for r in runs]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-")
            with os.fdopen(fd, "w") as f:
                json.dump(docs, f)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("restic run ledger %s not written: %s", self.path, exc)
            return
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("run ledger listener failed")
