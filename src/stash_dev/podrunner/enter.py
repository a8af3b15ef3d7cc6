"""Enter a running container's view, then exec a command there (what `runc exec` does).

Run by the stand-in kubelet as `python3 -I -S enter.py PLAN`, where PLAN is JSON with the
container's main `pid`, the `argv` to run, whether to make the terminal on stdin the
controlling one (`tty`) and an `error_fd` (no secrets: the environment is read here).
Standard library only, so it starts fast and imports nothing of the project.

From the container's main process it takes its mount and UTS namespaces (so the pod's
volumes are where the container sees them), its root (the trampoline may have chrooted
into a private one) and working directory, its environment (/proc/PID/environ: the env
the pod runner built from the pod spec) and its user and groups; then it execs argv. It
writes one NUL byte to `error_fd` when it starts and, on a failure before exec, the
reason after it, then exits 128; a successful exec closes it. Not for: anything after
exec, or choosing the process (containerexec.py).
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import sys
import termios
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)


class EnterError(Exception):
    """The command cannot start in the container; the message says why."""


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        raw = f.read()
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def _ids(pid: int) -> tuple[int, int, list[int]]:
    """(effective uid, effective gid, supplementary groups) of the process."""
    uid = gid = 0
    groups: list[int] = []
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "Uid":
                uid = int(value.split()[1])
            elif key == "Gid":
                gid = int(value.split()[1])
            elif key == "Groups":
                groups = [int(g) for g in value.split()]
    return uid, gid, groups


def _setns(pid: int, kind: str) -> None:
    fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
    try:
        if _libc.setns(fd, 0) != 0:
            err = ctypes.get_errno()
            raise EnterError(f"entering the container's {kind} namespace: {os.strerror(err)}")
    finally:
        os.close(fd)


def run(plan: dict[str, Any]) -> None:
    """Enter the container of `plan['pid']` and exec `plan['argv']` (returns by raising)."""
    pid = int(plan["pid"])
    try:
        env = _environ(pid)
        uid, gid, groups = _ids(pid)
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
        cwd = os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise EnterError("the container is not running") from None
    _setns(pid, "uts")
    _setns(pid, "mnt")
    os.fchdir(root)
    os.chroot(".")
    os.fchdir(cwd)
    os.close(root)
    os.close(cwd)
    if plan.get("tty"):
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    argv = [str(a) for a in plan["argv"]]
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        raise EnterError(f'exec "{argv[0]}": executable file not found in $PATH') from None
    except PermissionError:
        raise EnterError(f'exec "{argv[0]}": permission denied') from None


def main() -> None:
    """Entry point: `enter.py PLAN`."""
    plan = json.loads(sys.argv[1])
    error_fd = int(plan["error_fd"])
    os.set_inheritable(error_fd, False)
    os.write(error_fd, b"\0")  # "the helper runs"
    try:
        run(plan)
    except (EnterError, OSError) as exc:
        os.write(error_fd, str(exc).encode(errors="replace") or b"exec failed")
        os._exit(128)
    except Exception as exc:  # a bug here must still read as a start error, not an exit
        os.write(error_fd, f"entering the container failed: {type(exc).__name__}: {exc}".encode())
        os._exit(128)


if __name__ == "__main__":
    main()
