"""The processes the chaos suite kills: operator replicas and what runs below a container.

What it is for: `OperatorReplica`, one `stash operator` process (leader election on,
its own metrics and webhook ports kept across restarts, its output in a log file),
started, SIGKILLed and started again; `descendants` and `kill_named`, to kill the restic
a container started (restic runs in a session of its own, not in the container's
process group) without killing the container.

Not for: choosing when to kill (`tests.chaos.faults`) or storage servers
(`tests.support.storage`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import aiohttp

from tests.support.operator_pod import STASH
from tests.support.storage import free_port


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_named(pid: int, name: str) -> int:
    """SIGKILL every process called `name` below `pid`; how many were killed."""
    killed = 0
    for child in descendants(pid):
        if _comm(child) == name:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
                killed += 1
    return killed


def kill_tree(pid: int) -> None:
    """SIGKILL `pid`'s process group and everything below it (a container dying: the
    agent first, so it cannot report its restic's death)."""
    below = descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for child in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


class OperatorReplica:
    """One `stash operator` process; the ports stay the same across restarts."""

    def __init__(
        self,
        name: str,
        kubeconfig: Path,
        watch_namespace: str,
        lease_namespace: str,
        log_dir: Path,
        env: dict[str, str],
    ) -> None:
        self.name = name
        self.metrics_port = free_port()
        self.webhook_port = free_port()
        self.log = log_dir / f"operator-{name}.log"
        self.argv = [
            STASH,
            "operator",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            watch_namespace,
            "--operator-namespace",
            lease_namespace,
            "--leader-elect",
            "--metrics-port",
            str(self.metrics_port),
            "--webhook-host",
            "127.0.0.1",
            "--webhook-port",
            str(self.webhook_port),
            "--no-snapshot-api",
        ]
        self.env = {**os.environ, "STASH_METRICS_HOST": "127.0.0.1", **env}
        for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            self.env.pop(var, None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The live process's id, None when it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    def start(self) -> None:
        """Start the process (its output appended to the log)."""
        with open(self.log, "ab") as out:
            out.write(f"\n===== start {self.starts}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env,
            )
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL the process (no lease release, no clean shutdown) and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s (the end of the suite)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    async def ready(self) -> bool:
        """Whether `/readyz` answers 200 (caches synced, webhook serving)."""
        if self.pid is None:
            code = self.proc.returncode if self.proc else None
            raise AssertionError(f"operator {self.name} exited {code}: {self.tail()}")
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
                http.get(f"http://127.0.0.1:{self.metrics_port}/readyz") as resp,
            ):
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def tail(self, chars: int = 6000) -> str:
        """The end of the replica's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"
