"""Running a command inside a container the pod runner started (`kubectl exec`'s last hop).

For: finding the container's main process (registry.py) and starting `enter.py` there in
its own process group, with pipes for stdin, stdout and stderr, or one pseudo-terminal
with `tty`; learning whether the exec happened (an error pipe that a successful exec
closes). The command sees what the container sees: its volumes at their mountPaths,
its root, working directory, environment, hostname, user and groups. Not for: the
streaming protocol (`stash_dev.kubelet_exec`) or starting containers (process.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from stash_dev.podrunner.objects import PodRunnerError
from stash_dev.podrunner.process import namespace_support
from stash_dev.podrunner.registry import ContainerRecord

ENTER = Path(__file__).with_name("enter.py")


class ExecStartError(PodRunnerError):
    """The command could not start in the container (not found, not permitted, gone)."""


@dataclass
class ExecProcess:
    """A command running in a container: the process, and the terminal's master side
    when it has one (then its stdin, stdout and stderr are all that terminal)."""

    proc: asyncio.subprocess.Process
    terminal: int | None = None

    def kill(self) -> None:
        """SIGKILL the command's whole process group (the client went away)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def wait(self) -> int:
        """The exit code, as Kubernetes reports it (128 + N when killed by signal N)."""
        rc = await self.proc.wait()
        return 128 - rc if rc < 0 else rc

    def close(self) -> None:
        """Release the terminal, if any."""
        if self.terminal is not None:
            with contextlib.suppress(OSError):
                os.close(self.terminal)
            self.terminal = None


async def exec_in_container(
    container: ContainerRecord, argv: list[str], *, stdin: bool, tty: bool
) -> ExecProcess:
    """Start `argv` inside the running `container`; raise ExecStartError when it cannot."""
    reason = namespace_support()
    if reason:
        raise ExecStartError(reason)
    if not argv:
        raise ExecStartError("no command given")
    err_r, err_w = os.pipe()
    plan = {"pid": container.pid, "argv": argv, "tty": tty, "error_fd": err_w}
    cmd = [sys.executable, "-I", "-S", str(ENTER), json.dumps(plan)]
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    master: int | None = None
    try:
        if tty:
            master, slave = pty.openpty()
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    pass_fds=(err_w,),
                    start_new_session=True,
                    env=env,
                )
            finally:
                os.close(slave)
            os.set_blocking(master, False)
        else:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(err_w,),
                start_new_session=True,
                env=env,
            )
    except BaseException:
        os.close(err_r)
        if master is not None:
            os.close(master)
        raise
    finally:
        os.close(err_w)
    report = await asyncio.to_thread(_read_all, err_r)
    if report[:1] != b"\0" or len(report) > 1:
        await proc.wait()
        if master is not None:
            os.close(master)
        message = report[1:].decode(errors="replace") or f"exit {proc.returncode} before exec"
        raise ExecStartError(message)
    return ExecProcess(proc, master)


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
