"""Which restic is installed, and whether it can do what we ask.

What it is for: parsing `restic version`, refusing restic older than `MINIMUM` with a
`ResticTooOld` that names both versions, and `require()` for features newer than the
minimum (a clear `FeatureUnavailable` instead of a confusing "unknown flag").

Not for: running other restic commands (`driver`). `detect_version()` runs the binary
once per binary file (path, size, mtime) and remembers the answer for the process.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from dataclasses import dataclass

from stash.restic.errors import FeatureUnavailable, ResticError, ResticTooOld

__all__ = [
    "FEATURES",
    "MINIMUM",
    "ResticVersion",
    "check_supported",
    "detect_version",
    "parse_version",
    "require",
]


@dataclass(frozen=True, order=True)
class ResticVersion:
    """A restic release number, ordered the obvious way."""

    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


MINIMUM = ResticVersion(0, 17, 0)
"""Oldest restic we drive: documented exit codes 10/11/12, `--stdin-from-command`."""

FEATURES: dict[str, ResticVersion] = {
    "backup --stdin-from-command": ResticVersion(0, 17, 0),
    "backup --skip-if-unchanged": ResticVersion(0, 17, 0),
    "check --json": ResticVersion(0, 18, 0),
}
"""Features newer than some supported restic, and the release that brought them."""

_VERSION = re.compile(r"restic (\d+)\.(\d+)(?:\.(\d+))?")
_JSON_VERSION = re.compile(r'"version"\s*:\s*"(\d+)\.(\d+)(?:\.(\d+))?')


def parse_version(output: str) -> ResticVersion:
    """Parse `restic version` (text or `--json`) output, e.g. "restic 0.19.1 compiled ..."."""
    match = _VERSION.search(output) or _JSON_VERSION.search(output)
    if match is None:
        raise ResticError(
            f"cannot read a restic version from {output.strip()[:200]!r}",
            hint="check that the configured binary really is restic",
        )
    return ResticVersion(int(match[1]), int(match[2]), int(match[3] or 0))


def check_supported(version: ResticVersion, binary: str = "restic") -> ResticVersion:
    """Return `version` if the driver supports it, else raise `ResticTooOld`."""
    if version < MINIMUM:
        raise ResticTooOld(str(version), str(MINIMUM), binary)
    return version


def require(version: ResticVersion, feature: str) -> None:
    """Raise `FeatureUnavailable` if `feature` (a key of FEATURES) is newer than `version`."""
    needed = FEATURES[feature]
    if version < needed:
        raise FeatureUnavailable(feature, str(needed), str(version))


_CACHE: dict[tuple[str, int, int], ResticVersion] = {}
#: `restic version` runs in flight, by binary file: a second caller waits for the first.
_RUNNING: dict[tuple[str, int, int], asyncio.Task[ResticVersion]] = {}


async def detect_version(binary: str = "restic") -> ResticVersion:
    """Run `<binary> version` and return its version, raising `ResticTooOld` if too old.

    The answer is cached per binary file, so drivers can call this before every command;
    callers asking while it runs share that run.
    """
    path = shutil.which(binary)
    if path is None:
        raise ResticError(
            f"restic binary {binary!r} not found",
            hint="install restic or set STASH_RESTIC to its path",
        )
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        running = _RUNNING.get(key)
        if running is None or running.get_loop() is not asyncio.get_running_loop():
            running = asyncio.create_task(_run_version(path, binary))
            _RUNNING[key] = running
            running.add_done_callback(lambda _: _RUNNING.pop(key, None))
        # shielded: one caller cancelled does not cancel the run the others wait for
        _CACHE[key] = await asyncio.shield(running)
    return check_supported(_CACHE[key], binary)


async def _run_version(path: str, binary: str) -> ResticVersion:
    proc = await asyncio.create_subprocess_exec(
        path,
        "version",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise ResticError(
            f"`{binary} version` failed with status {proc.returncode}: "
            f"{err.decode(errors='replace').strip()[:300]}",
            hint="check that the configured binary really is restic",
        )
    return parse_version(out.decode(errors="replace"))
