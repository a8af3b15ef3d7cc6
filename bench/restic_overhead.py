"""Driver overhead: a backup through `stash.restic.Restic` against plain `restic backup`.

Both back up the same generated dataset (2,000 small files + 3 x 20 MB, random so
nothing compresses or deduplicates by accident) into fresh local repositories with
fresh caches, alternating which goes first each round, in the same run. The driver's
run includes everything a caller pays: version check, --json parsing, progress
callback, result models. The baseline is what a person would type:
`restic --cache-dir C backup DATA` with output to /dev/null.

Prints `name: value baseline ratio` lines, per round for the first backup and for a
second backup of the unchanged data: wall seconds, and CPU seconds (restic's plus, for
the driver, this process's own — steadier than wall time on a busy machine), then the
medians.
Target (issue #4): median first-backup ratio <= 1.05.
Run: `.venv/bin/python bench/restic_overhead.py [--rounds 7] [--small 2000] [--large-mb 20]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.support.restic_tools import restic_binary  # noqa: E402

from stash.api.repository import Backend  # noqa: E402
from stash.restic import Restic, ResticOptions, restic_target  # noqa: E402
from stash_dev.leaks import LeakWatch  # noqa: E402

PASSWORD = "bench-password"


def make_dataset(root: Path, small: int, large: int, large_mb: int) -> None:
    rng = random.Random(4)
    for i in range(small):
        d = root / f"dir{i % 40:02d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i:05d}.bin").write_bytes(rng.randbytes(rng.randint(256, 8192)))
    for i in range(large):
        with open(root / f"large{i}.bin", "wb") as f:
            for _ in range(large_mb):
                f.write(rng.randbytes(1 << 20))


class Clock:
    """Wall time and CPU time (children + this process) from creation to stop()."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = self._cpu()

    @staticmethod
    def _cpu() -> float:
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        s = resource.getrusage(resource.RUSAGE_SELF)
        return c.ru_utime + c.ru_stime + s.ru_utime + s.ru_stime

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, self._cpu() - self.cpu


async def plain(binary: str, repo: Path, cache: Path, *args: str) -> tuple[float, float]:
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}
    clock = Clock()
    proc = await asyncio.create_subprocess_exec(
        binary, "--cache-dir", str(cache), *args,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"restic {args[0]} failed: {err.decode()}")
    return clock.stop()


async def driven(binary: str, repo: Path, cache: Path, data: Path) -> tuple[float, float]:
    backend = Backend.model_validate({"local": {"mountPath": str(repo)}})
    target = restic_target(backend, {"RESTIC_PASSWORD": PASSWORD}, scratch_dir=cache.parent)
    restic = Restic(target, ResticOptions(binary=binary, cache_dir=str(cache)))
    events: list[object] = []
    clock = Clock()
    summary = await restic.backup([str(data)], host="bench", on_progress=events.append)
    result = clock.stop()
    assert summary.snapshot_id
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=3)
    parser.add_argument("--large-mb", type=int, default=20)
    args = parser.parse_args()
    binary = restic_binary()

    with tempfile.TemporaryDirectory(prefix="restic-bench-") as tmp:
        base = Path(tmp)
        data = base / "data"
        make_dataset(data, args.small, args.large, args.large_mb)
        print(
            f"dataset: {args.small} small files + {args.large} x {args.large_mb} MB, "
            f"{args.rounds} rounds, {binary}",
            file=sys.stderr,
        )
        ratios: dict[str, list[float]] = {}
        for i in range(args.rounds):
            repos = {k: base / f"r{i}-{k}" for k in ("driver", "plain")}
            caches = {k: base / f"c{i}-{k}" for k in ("driver", "plain")}
            for k in repos:  # repository creation is not what is measured
                await plain(binary, repos[k], caches[k], "init")
            order = ["driver", "plain"] if i % 2 == 0 else ["plain", "driver"]
            times: dict[str, list[tuple[float, float]]] = {"driver": [], "plain": []}
            for run in range(2):  # first backup, then the unchanged data again
                for who in order if run == 0 else reversed(order):
                    if who == "driver":
                        t = await driven(binary, repos[who], caches[who], data)
                    else:
                        t = await plain(binary, repos[who], caches[who], "backup", str(data))
                    times[who].append(t)
            for run, name in enumerate(("backup", "rebackup")):
                for kind, idx in (("seconds", 0), ("cpu_seconds", 1)):
                    d, p = times["driver"][run][idx], times["plain"][run][idx]
                    ratios.setdefault(f"{name}_{kind}", []).append(d / p)
                    print(f"{name}_{kind}_round{i}: {d:.3f} {p:.3f} {d / p:.3f}")
        for key, values in ratios.items():
            med = statistics.median(values)
            print(f"median_{key}_ratio: {med:.3f} 1.000 {med:.3f}")
        med1 = statistics.median(ratios["backup_seconds"])
        print(f"target (median backup ratio <= 1.05): {'met' if med1 <= 1.05 else 'NOT met'}")


if __name__ == "__main__":
    with LeakWatch() as watch:
        asyncio.run(main())
    sys.exit(watch.verdict())
