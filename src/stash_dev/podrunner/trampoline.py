"""Inside a fresh mount namespace: put a pod's volumes where its spec says, then exec.

Run by the pod runner as
`unshare --mount --uts --propagation private -- python3 -I -S trampoline.py PLAN`, where
PLAN is a JSON file (the runner passes an unlinked one as /dev/fd/N, so secret env values
never touch the disk). Standard library only, so it starts fast and imports nothing of
the project.

For each mount (parents first) it bind-mounts the source at the target, creating the
mount point without touching the host: a missing mount point is made inside a volume when
it is under one, and otherwise the deepest existing directory is covered, in this
namespace only, by a tmpfs that re-binds every entry it had (for `/` that tmpfs becomes
a new root and the process is chrooted into it). Read-only mounts are remounted
read-only last. The plan's `image` directories (the executable's virtualenv and sources,
image.py) that a volume covers are bound back on top of it, read-only, as an image's files
would be. Directories the plan names `traversable` (root-only ones on the way to
the executable, see image.py) are covered first the same way, with the search bit set
for everyone. Then it sets the hostname, working directory and user, and execs the
container's argv. It writes one NUL byte to the plan's `error_fd` when it starts and, on
a failure before exec, the reason after it, then exits 128; a successful exec closes it.
Not for: anything after exec.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import socket
import stat
import sys
from typing import Any

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MNT_DETACH = 2
_ST_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC))

_libc = ctypes.CDLL(None, use_errno=True)


class StartError(Exception):
    """The container cannot start; the message is shown to the runner's caller."""


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise StartError(f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    """mount(2), raising StartError with the target on failure."""
    rc = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(rc, f"mount {source or ''} on {target}")


class View:
    """The container's filesystem view being built: a root and what is private in it."""

    def __init__(self, staging: str) -> None:
        self.root = "/"
        self.staging = staging
        self.volumes: list[str] = []
        self.private: set[str] = set()

    def host(self, path: str) -> str:
        """Where a view path is, seen from this process."""
        return path if self.root == "/" else os.path.join(self.root, path.lstrip("/"))

    def resolve(self, path: str) -> tuple[str, list[str]]:
        """(deepest existing directory or entry, the missing components after it)."""
        parts = [p for p in path.split("/") if p]
        cur, hops = "/", 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                cur = os.path.dirname(cur)
                continue
            cand = os.path.join(cur, part)
            real = self.host(cand)
            if os.path.islink(real):
                hops += 1
                if hops > 40:
                    raise StartError(f"{path}: too many levels of symbolic links")
                link = os.readlink(real)
                if link.startswith("/"):
                    cur = "/"
                parts = [p for p in link.split("/") if p] + parts
            elif os.path.lexists(real):
                cur = cand
            else:
                if ".." in parts:
                    raise StartError(f"{path}: '..' after a missing directory")
                return cur, [part, *parts]
        return cur, []

    def _is_private(self, path: str) -> bool:
        if path in self.private:
            return True
        return any(path == v or path.startswith(v.rstrip("/") + "/") for v in self.volumes)

    def prepare(self, path: str, want_dir: bool) -> str:
        """Make `path` exist in the view (without writing to the host); its resolved path."""
        existing, missing = self.resolve(path)
        if not missing:
            is_dir = os.path.isdir(self.host(existing))
            if is_dir != want_dir:
                kind = "a directory" if want_dir else "a file"
                raise StartError(f"cannot mount {kind} on {path}: it exists as the other kind")
            return existing
        if not os.path.isdir(self.host(existing)):
            raise StartError(f"cannot create {path}: {existing} is not a directory")
        if not self._is_private(existing):
            self.shadow(existing)
        cur = existing
        for i, part in enumerate(missing):
            cur = os.path.join(cur, part)
            last = i == len(missing) - 1
            if last and not want_dir:
                os.close(os.open(self.host(cur), os.O_WRONLY | os.O_CREAT, 0o644))
            else:
                os.mkdir(self.host(cur), 0o755)
                self.private.add(cur)
        return cur

    def shadow(self, directory: str, search: bool = False) -> None:
        """Cover `directory` with a tmpfs that shows the same entries, in this view only
        (with `search`, anyone may pass through it, as through an image's directories)."""
        if directory == "/":
            self._new_root()
            return
        target = self.host(directory)
        st = os.stat(target)
        fd = os.open(target, os.O_PATH | os.O_DIRECTORY)
        entries = os.listdir(f"/proc/self/fd/{fd}")
        mode = stat.S_IMODE(st.st_mode) | (0o111 if search else 0)
        opts = f"mode={mode:o},uid={st.st_uid},gid={st.st_gid}"
        mount("tmpfs", target, "tmpfs", 0, opts)
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):  # gone since listed
                _mirror(f"/proc/self/fd/{fd}/{entry}", os.path.join(target, entry))
        os.close(fd)
        self.private.add(directory)

    def _new_root(self) -> None:
        new = self.staging
        mount("tmpfs", new, "tmpfs", 0, "mode=755")
        for entry in os.listdir("/"):
            with contextlib.suppress(FileNotFoundError):
                _mirror("/" + entry, os.path.join(new, entry))
        # The recursive bind of the directory holding `new` carried a copy of it.
        inner = os.path.join(new, new.lstrip("/"))
        if os.path.ismount(inner):
            _check(_libc.umount2(inner.encode(), MNT_DETACH), f"umount {inner}")
        self.root = new
        self.private.add("/")


def _mirror(source: str, target: str) -> None:
    st = os.lstat(source)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), target)
        return
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(target, stat.S_IMODE(st.st_mode))
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o600))
    mount(source, target, None, MS_BIND | MS_REC)


def _remount_read_only(target: str) -> None:
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    st_flags = os.statvfs(target).f_flag
    for st_bit, ms_bit in _ST_FLAGS:
        if st_flags & st_bit:
            flags |= ms_bit
    mount(None, target, None, flags)


def _user(spec: dict[str, Any]) -> None:
    uid, gid = spec.get("uid"), spec.get("gid")
    groups = [int(g) for g in spec.get("groups") or []]
    if uid is None and gid is None and not groups:
        return
    os.setgroups(groups)
    os.setgid(int(gid if gid is not None else 0))
    if uid is not None:
        os.setuid(int(uid))


def run(plan: dict[str, Any]) -> None:
    """Set up the view `plan` describes and exec its argv (returns only by raising)."""
    socket.sethostname(plan["hostname"])
    view = View(plan["staging"])
    # Hold every source open first: covering a directory later must not hide one.
    sources = [os.open(m["source"], os.O_PATH) for m in plan["mounts"]]
    images = [(p, os.open(p, os.O_PATH)) for p in plan.get("image") or [] if os.path.isdir(p)]
    # The user reaches the executable and its interpreter, as in an image (image.py).
    for directory in plan.get("traversable") or []:
        view.shadow(directory, search=True)
    done: list[tuple[str, bool]] = []
    for m, fd in zip(plan["mounts"], sources, strict=True):
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        target = view.prepare(m["target"], is_dir)
        mount(f"/proc/self/fd/{fd}", view.host(target), None, MS_BIND | MS_REC)
        if is_dir:
            view.volumes.append(target)
        done.append((view.host(target), bool(m["read_only"])))
        os.close(fd)
    # The "image" (the checkout's venv and sources) stays visible where a volume covers it.
    for path, fd in images:
        if view._is_private(path) and any(
            path.startswith(v.rstrip("/") + "/") for v in view.volumes
        ):
            target = view.prepare(path, True)
            mount(f"/proc/self/fd/{fd}", view.host(target), None, MS_BIND | MS_REC)
            done.append((view.host(target), True))
        os.close(fd)
    for host_path, read_only in done:
        if read_only:
            _remount_read_only(host_path)
    workdir = view.prepare(plan.get("working_dir") or "/", True)
    if view.root != "/":
        os.chroot(view.root)
    os.chdir(workdir)
    os.umask(0o022)
    _user(plan.get("user") or {})
    argv, env = plan["argv"], plan["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        raise StartError(f'exec "{argv[0]}": executable file not found') from None
    except PermissionError:
        raise StartError(f'exec "{argv[0]}": permission denied') from None


def main() -> None:
    """Entry point: `trampoline.py PLAN`."""
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    error_fd = int(plan["error_fd"])
    os.set_inheritable(error_fd, False)
    os.write(error_fd, b"\0")  # "the namespace exists and the trampoline runs"
    for fd in plan.get("close_fds") or []:
        os.close(int(fd))
    try:
        run(plan)
    except (StartError, OSError) as exc:
        os.write(error_fd, str(exc).encode(errors="replace") or b"start failed")
        os._exit(128)
    except Exception as exc:  # a bug here must still read as a start error, not an exit
        os.write(error_fd, f"trampoline failed: {type(exc).__name__}: {exc}".encode())
        os._exit(128)


if __name__ == "__main__":
    main()
