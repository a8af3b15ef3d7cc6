"""Starting a prepared container as a local process, and the handle on it.

For: spawning the trampoline under `unshare` in its own process group with the plan on
an unlinked file descriptor, learning whether the exec succeeded (an error pipe that a
successful exec closes), capturing stdout and stderr to one log file, signalling the
whole process group (what is left of it is killed when the main process ends, as in a
container), and reporting the exit code as Kubernetes does (128 + signal number for a
signalled process). Not for: deciding what to run (runner.py) or talking to the
apiserver (status.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from stash_dev.podrunner.objects import PodRunnerError

log = logging.getLogger("stash_dev.podrunner")

TRAMPOLINE = Path(__file__).with_name("trampoline.py")

#: The exit code a kubelet reports for a container that failed to start.
START_ERROR_EXIT = 128


def namespace_support() -> str | None:
    """Why containers cannot get their own mount namespace here, or None when they can."""
    if os.geteuid() != 0:
        return "the pod runner needs root to create mount namespaces (running as non-root)"
    if shutil.which("unshare") is None:
        return "the pod runner needs `unshare` (util-linux) on PATH"
    return None


class RunningContainer:
    """A container of a pod running as a local process group."""

    def __init__(
        self,
        pod_key: str,
        container: str,
        proc: asyncio.subprocess.Process,
        log_path: Path,
        on_exit: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.pod_key = pod_key
        self.container = container
        self.log_path = log_path
        self._proc = proc
        self._exit_code: int | None = None
        self._on_exit = on_exit
        self._done = asyncio.get_running_loop().create_task(self._supervise())

    @property
    def pid(self) -> int:
        """The process id, also the process group id."""
        return int(self._proc.pid)

    @property
    def exit_code(self) -> int | None:
        """The exit code once the process ended (128+N when killed by signal N), else None."""
        return self._exit_code

    async def _supervise(self) -> int:
        rc = await self._proc.wait()
        # As when a container's main process ends: nothing else of it keeps running.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        code = 128 - rc if rc < 0 else rc
        self._exit_code = code
        if self._on_exit is not None:
            try:
                await self._on_exit(code)
            except Exception as exc:  # the exit code stands even if its report fails
                log.warning(
                    "%s/%s: reporting exit %s failed: %s", self.pod_key, self.container, code, exc
                )
        return code

    async def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end (and its status to be reported); its exit code."""
        return await asyncio.wait_for(asyncio.shield(self._done), timeout)

    def signal(self, sig: int) -> None:
        """Send `sig` to the container's whole process group."""
        if self._exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM to the whole process group."""
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the whole process group."""
        self.signal(signal.SIGKILL)

    async def stop(self, grace: float = 30.0) -> int:
        """Terminate, and kill what is left after `grace` seconds, as a kubelet does."""
        self.terminate()
        try:
            return await self.wait(grace)
        except TimeoutError:
            self.kill()
            return await self.wait()

    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def __repr__(self) -> str:
        return f"<RunningContainer {self.pod_key}/{self.container} pid={self.pid}>"


def _plan_file(plan: dict[str, Any], error_fd: int) -> IO[bytes]:
    """The plan in an unlinked temporary file: secret env values never get a name on disk."""
    plan_file = tempfile.TemporaryFile()  # noqa: SIM115 -- returned open, closed by spawn()
    full = {**plan, "error_fd": error_fd, "close_fds": [plan_file.fileno()]}
    plan_file.write(json.dumps(full).encode())
    plan_file.flush()
    plan_file.seek(0)
    return plan_file


def _open_log(log_path: Path) -> IO[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return open(log_path, "ab")


def _log_tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-2000:].strip()


async def spawn(plan: dict[str, Any], log_path: Path) -> asyncio.subprocess.Process:
    """Start the trampoline for `plan`; raise PodRunnerError if the exec did not happen."""
    reason = namespace_support()
    if reason:
        raise PodRunnerError(reason)
    err_r, err_w = os.pipe()
    try:
        with _plan_file(plan, err_w) as plan_file, _open_log(log_path) as log:
            plan_fd = plan_file.fileno()
            proc = await asyncio.create_subprocess_exec(
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
                sys.executable,
                "-I",
                "-S",
                str(TRAMPOLINE),
                f"/dev/fd/{plan_fd}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(plan_fd, err_w),
                start_new_session=True,
                env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            )
    finally:
        os.close(err_w)
    report = await asyncio.to_thread(_read_all, err_r)
    if report[:1] != b"\0":
        rc = await proc.wait()
        tail = await asyncio.to_thread(_log_tail, log_path)
        raise PodRunnerError(f"could not enter a mount namespace (exit {rc}): {tail}")
    if len(report) > 1:
        await proc.wait()
        raise PodRunnerError(report[1:].decode(errors="replace"))
    return proc


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
