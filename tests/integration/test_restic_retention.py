"""Retention on snapshots with forged times, checked against restic's own decision."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stash.api.common import RetentionPolicy
from tests.integration.conftest import MakeRestic
from tests.support.storage import Storage

START = datetime(2023, 1, 15, 12, 0, tzinfo=UTC)

# (host, time, tags): hourly bursts, dailies, weeklies, monthlies and a yearly spread,
# a tagged release among the old ones, and a second host with its own group.
PLAN: list[tuple[str, datetime, list[str]]] = [
    ("app-0", START, ["release"]),
    ("app-0", START + timedelta(days=40), []),
    ("app-0", START + timedelta(days=75), []),
    ("app-0", START + timedelta(days=200), []),
    ("app-0", START + timedelta(days=380), []),
    ("app-0", START + timedelta(days=400), []),
    ("app-0", START + timedelta(days=407), []),
    ("app-0", START + timedelta(days=414), []),
    ("app-0", START + timedelta(days=420), []),
    ("app-0", START + timedelta(days=421), []),
    ("app-0", START + timedelta(days=421, hours=1), []),
    ("app-0", START + timedelta(days=421, hours=2), []),
    ("app-0", START + timedelta(days=421, hours=2, minutes=30), []),
    ("app-1", START + timedelta(days=100), []),
    ("app-1", START + timedelta(days=101), []),
    ("app-1", START + timedelta(days=102), []),
]

POLICY = RetentionPolicy(
    name="mixed",
    keep_last=2,
    keep_hourly=2,
    keep_daily=3,
    keep_weekly=2,
    keep_monthly=3,
    keep_yearly=2,
    keep_tags=["release"],
)
# The same policy written out by hand, so restic's own run does not go through our code.
FLAGS = [
    "--keep-last", "2", "--keep-hourly", "2", "--keep-daily", "3", "--keep-weekly", "2",
    "--keep-monthly", "3", "--keep-yearly", "2", "--keep-tag", "release",
]  # fmt: skip


async def restic_says(restic_bin: str, env: dict[str, str]) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        restic_bin, "--no-cache", "--json", "forget", "--dry-run", *FLAGS,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    groups: list[dict[str, object]] = json.loads(out)
    return groups


def ids(snaps: object) -> set[str]:
    assert isinstance(snaps, list) or snaps is None
    return {str(s["id"]) for s in snaps or []}


async def test_forget_matches_restic_s_own_json(
    local_storage: Storage, make_restic: MakeRestic, restic_bin: str, tmp_path: Path
) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_text("same content every time")
    restic = make_restic(local_storage)
    await restic.init()
    for host, when, tags in PLAN:
        await restic.backup([str(src)], host=host, tags=tags, time=when)

    expected = await restic_says(restic_bin, dict(restic.target.env))
    assert len(expected) == 2  # one group per host (same paths)
    keep = set().union(*(ids(g["keep"]) for g in expected))
    remove = set().union(*(ids(g["remove"]) for g in expected))
    assert keep and remove

    result = await restic.forget(POLICY)
    assert {s.id for s in result.kept} == keep
    assert {s.id for s in result.removed} == remove
    reasons = {r.snapshot.id: set(r.matches) for g in result.groups for r in g.reasons}
    expected_reasons = {
        str(r["snapshot"]["id"]): set(r["matches"])  # type: ignore[index]
        for g in expected
        for r in g["reasons"]  # type: ignore[attr-defined]
    }
    assert reasons == expected_reasons
    assert {s.id for s in await restic.snapshots()} == keep

    # An independent reading of the simplest rules: the tagged release survives, the
    # newest two of app-0 survive, and app-1 (3 snapshots, 3 dailies) keeps all.
    by_time = {s.time: s for s in result.kept}
    release = next(s for s in result.kept if "release" in s.tags)
    assert release.time == START
    newest = sorted((t for t in by_time if by_time[t].hostname == "app-0"), reverse=True)[:2]
    assert newest == [PLAN[12][1], PLAN[11][1]]
    assert sum(1 for s in result.kept if s.hostname == "app-1") == 3
