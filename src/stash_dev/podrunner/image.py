"""What stands in for a container's image: this host's files, seen by the container's user.

There are no images here; a container's executable (its `command`, or the runner's
`entrypoints` entry for its image) and the interpreter its `#!` line names are files of
this host, wherever they were installed (a pyenv Python under /root, say). A container
that runs as a non-root user, as a restricted pod does, could not reach them through a
root-only directory, which an image would never have. `traversal_dirs` names those
directories; the trampoline lets the user through them in the container's own mount
namespace only (a tmpfs with the search bit set, showing the same entries), so nothing
on the host changes and no file becomes readable that was not.

Not for: volumes (`volumes.py`) or starting the process (`process.py`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path


def _interpreter(path: str) -> str | None:
    """The absolute interpreter of a `#!` script, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    if not words or not words[0].startswith(b"/"):
        return None
    return words[0].decode(errors="replace")


def _closed_parents(path: str) -> list[str]:
    """The directories above `path` that others may not search (no o+x)."""
    closed = []
    for parent in Path(path).parents:
        try:
            if not os.stat(parent).st_mode & 0o001:
                closed.append(str(parent))
        except OSError:
            continue
    return closed


def traversal_dirs(argv0: str, env: Mapping[str, str], uid: int | None) -> list[str]:
    """Host directories (parents first) a user `uid` must be let through to run `argv0`
    (found on the container's PATH) and its interpreter; none for root."""
    if not uid:
        return []
    found = argv0 if "/" in argv0 else shutil.which(argv0, path=env.get("PATH", ""))
    if not found:
        return []
    files = [found, os.path.realpath(found)]
    interpreter = _interpreter(files[-1])
    if interpreter:
        files += [interpreter, os.path.realpath(interpreter)]
    dirs = {d for f in files for d in _closed_parents(f)}
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def image_roots(argv0: str, env: Mapping[str, str]) -> list[str]:
    """Host directories that make up the container's "image": the virtualenv of its
    executable and the source trees its `.pth` files add (an editable install). A volume
    mounted over one of them (the chart's emptyDir at /tmp, with a checkout under /tmp)
    must not hide them, as a volume never hides an image's own files elsewhere."""
    found = argv0 if "/" in argv0 else shutil.which(argv0, path=env.get("PATH", ""))
    if not found:
        return []
    venv = Path(found).parent.parent
    if not (venv / "pyvenv.cfg").is_file():
        return []
    roots = [str(venv)]
    for pth in sorted(venv.glob("lib/python*/site-packages/*.pth")):
        try:
            lines = pth.read_text().splitlines()
        except OSError:
            continue
        roots += [
            line.strip() for line in lines if line.startswith("/") and Path(line.strip()).is_dir()
        ]
    return sorted(dict.fromkeys(roots))
