"""Which local process is a pod's container: the pod runner's record, read by the kubelet.

A container runtime knows its containers' processes; here the pod runner is the runtime
and the stand-in kubelet (another process) serves `kubectl exec`. So the runner records
each container it starts as `<dir>/<pod uid>/<container>.json` (its pid and the
process's start time) and removes the record when the process ends; the kubelet finds a
container's process there. A record whose process is gone, or whose pid now belongs to
another process (a different start time), counts as no container. Pod UIDs are unique,
so control planes sharing one host share the directory safely.

The directory is `STASH_DEV_RUNTIME_DIR`, else /run/stash-dev/containers (root only,
like the runner). Not for: starting or entering processes (process.py, containerexec.py).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path("/run/stash-dev/containers")


def runtime_dir() -> Path:
    """Where container records live (STASH_DEV_RUNTIME_DIR overrides the default)."""
    return Path(os.environ.get("STASH_DEV_RUNTIME_DIR") or DEFAULT_DIR)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or
    None when no such process exists."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(") ", 1)[1].split()
    if fields[0] == "Z":
        return None  # a zombie: the container has ended
    return int(fields[19])


@dataclass(frozen=True)
class ContainerRecord:
    """One running container: its main process, identified by pid and start time."""

    pid: int
    started: int

    def alive(self) -> bool:
        """True while the recorded process (not a later one with its pid) runs."""
        return start_time(self.pid) == self.started


class ContainerRegistry:
    """The records under one directory."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or runtime_dir()

    def _path(self, pod_uid: str, container: str) -> Path:
        return self.directory / pod_uid / f"{container}.json"

    def record(self, pod_uid: str, container: str, pid: int) -> None:
        """Note that `container` of the pod `pod_uid` runs as process `pid`."""
        started = start_time(pid)
        if started is None:
            return  # already gone: nothing to exec into
        path = self._path(pod_uid, container)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"pid": pid, "started": started}))
        tmp.replace(path)

    def forget(self, pod_uid: str, container: str, pid: int) -> None:
        """Drop the record of `container` if it still names process `pid`."""
        path = self._path(pod_uid, container)
        found = self.find(pod_uid, container, only_alive=False)
        if found is not None and found.pid == pid:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty

    def find(
        self, pod_uid: str, container: str, *, only_alive: bool = True
    ) -> ContainerRecord | None:
        """The record of a container (None when there is none, or its process ended)."""
        try:
            raw = json.loads(self._path(pod_uid, container).read_text())
            rec = ContainerRecord(int(raw["pid"]), int(raw["started"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if only_alive and not rec.alive():
            return None
        return rec
