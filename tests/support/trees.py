"""Generated directory trees and a byte-for-byte description to compare restores with.

What it is for: `make_tree()` writes a tree with what restores get wrong: file modes,
nanosecond mtimes (files, dirs, symlinks), relative/absolute/dangling symlinks, empty
directories, unicode and space-containing names, an empty file, and a large sparse
file. `describe()` reads any tree into {relative path: Entry}; two trees restored
byte for byte describe equal.

Not for: benchmark datasets (bench/ builds its own, bigger ones).
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "describe", "make_tree"]

SPARSE_SIZE = 24 << 20


@dataclass(frozen=True)
class Entry:
    """What a restore must reproduce for one path."""

    kind: str
    mode: int
    mtime_ns: int
    uid: int
    gid: int
    size: int
    digest: str  # sha256 of the content; the link target for symlinks


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def describe(root: Path) -> dict[str, Entry]:
    """Every path under `root` (and root itself as ".") with its metadata and content."""
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath) if name == "." else Path(dirpath) / name
            if name == "." and Path(dirpath) != root:
                continue
            st = path.lstat()
            rel = path.relative_to(root).as_posix() or "."
            if stat.S_ISLNK(st.st_mode):
                kind, digest, size = "symlink", os.readlink(path), 0
            elif stat.S_ISDIR(st.st_mode):
                kind, digest, size = "dir", "", 0
            else:
                kind, digest, size = "file", _digest(path), st.st_size
            out[rel] = Entry(
                kind, stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_uid, st.st_gid, size, digest
            )
    return out


def _set_mtime(path: Path, rng: random.Random) -> None:
    ns = 1_600_000_000 * 10**9 + rng.randrange(10**17)
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def make_tree(root: Path, *, seed: int = 1, files: int = 40, sparse: bool = True) -> Path:
    """Write a varied tree under `root` (created) and return `root`."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    dirs = [
        root / "docs",
        root / "docs" / "nested" / "deeper",
        root / "with space",
        root / "ünïcødé – 日本語",  # noqa: RUF001 - the en dash is the point
        root / "empty dir",
        root / "private",
    ]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    names = ["a.txt", "b c.dat", "Zürich.bin", "ファイル.txt", "x"]
    for i in range(files):
        parent = rng.choice([root, *dirs[:4]])
        path = parent / f"{i:03d}-{rng.choice(names)}"
        size = rng.choice([0, 1, 100, 4096, 65_537, 300_000])
        path.write_bytes(rng.randbytes(size))
        os.chmod(path, rng.choice([0o644, 0o600, 0o755, 0o640, 0o444]))
        _set_mtime(path, rng)
    (root / "empty-file").write_bytes(b"")
    (root / "private" / "secret.key").write_bytes(b"k" * 32)
    os.chmod(root / "private" / "secret.key", 0o400)
    if sparse:
        # Data at the start, in the middle and at the end; holes in between.
        with open(root / "sparse.img", "wb") as f:
            for offset in (0, SPARSE_SIZE // 2, SPARSE_SIZE - 4096):
                f.seek(offset)
                f.write(rng.randbytes(4096))
        _set_mtime(root / "sparse.img", rng)
    os.symlink("docs/nested", root / "link-to-dir")
    os.symlink("../with space", root / "docs" / "relative link")
    os.symlink("/nonexistent/target", root / "dangling")
    for link in ("link-to-dir", "docs/relative link", "dangling"):
        _set_mtime(root / link, rng)
    os.chmod(root / "private", 0o700)
    os.chmod(root / "with space", 0o750)
    # Directory mtimes last: creating entries above changed them.
    for d in sorted([root, *dirs], key=lambda p: len(p.parts), reverse=True):
        _set_mtime(d, rng)
    return root
