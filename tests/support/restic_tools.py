"""Where the tests find restic and rest-server.

STASH_RESTIC / STASH_REST_SERVER win; otherwise `tests/tools/build.sh` builds (or, when
already built, just names) the pinned binaries and prints their directory. A binary
that cannot be had is a test failure with the reason, never a skip.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

__all__ = ["ToolMissing", "rest_server_binary", "restic_binary"]

BUILD = Path(__file__).resolve().parents[1] / "tools" / "build.sh"


class ToolMissing(RuntimeError):
    """A binary the tests need could not be found or built."""


@functools.cache
def _bindir() -> Path:
    try:
        out = subprocess.run(
            [str(BUILD)], capture_output=True, text=True, check=True, timeout=1800
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise ToolMissing(
            f"{BUILD} failed (exit {exc.returncode}): {exc.stderr.strip()[-2000:]}"
        ) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolMissing(f"{BUILD} could not run: {exc}") from None
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        raise ToolMissing(f"{BUILD} printed no bin directory")
    return Path(lines[-1].strip())


def _tool(env: str, name: str) -> str:
    override = os.environ.get(env)
    path = Path(override) if override else _bindir() / name
    if not os.access(path, os.X_OK):
        raise ToolMissing(f"{name} not found or not executable at {path} (set {env} to override)")
    return str(path)


def restic_binary() -> str:
    """Path of the restic binary for tests."""
    return _tool("STASH_RESTIC", "restic")


def rest_server_binary() -> str:
    """Path of restic's rest-server binary for tests."""
    return _tool("STASH_REST_SERVER", "rest-server")
