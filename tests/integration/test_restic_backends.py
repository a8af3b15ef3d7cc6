"""The same backup / restore / forget / check suite on every kind of real storage."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from stash.api.common import RetentionPolicy
from tests.integration.conftest import MakeRestic
from tests.support.storage import Storage
from tests.support.trees import SPARSE_SIZE, describe, make_tree


def restored(target: Path, source: Path) -> Path:
    """Where restic puts `source` when restoring into `target` (absolute paths kept)."""
    return target / source.relative_to("/")


async def test_backup_restore_is_byte_for_byte(
    storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src", seed=7)
    expected = describe(src)
    restic = make_restic(storage)

    first = await restic.init()
    again = await restic.init()
    assert first.created and not again.created
    assert again.repository_id == first.repository_id

    summary = await restic.backup([str(src)], host="app-0", tags=["nightly"])
    assert summary.snapshot_id
    assert summary.files_new == sum(1 for e in expected.values() if e.kind == "file")

    target = tmp_path / "restore"
    result = await restic.restore(str(target), host="app-0", paths=[str(src)], sparse=True)
    assert result.files_restored > 0
    got = describe(restored(target, src))
    assert got == expected
    # The sparse file came back sparse, not as 24 MiB of zeros on disk.
    sparse = restored(target, src) / "sparse.img"
    assert sparse.stat().st_blocks * 512 < SPARSE_SIZE // 2

    [snap] = await restic.snapshots(host="app-0", paths=[str(src)], tags=["nightly"])
    assert snap.id == summary.snapshot_id and snap.hostname == "app-0"
    assert await restic.snapshots(host="someone-else") == []


async def test_second_backup_of_unchanged_data_adds_almost_nothing(
    storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src", seed=3, sparse=False)
    restic = make_restic(storage)
    await restic.init()
    first = await restic.backup([str(src)], host="h")
    second = await restic.backup([str(src)], host="h")
    assert first.data_added > 100_000
    assert second.files_new == 0 and second.files_changed == 0
    assert second.data_added < 4096
    assert second.snapshot_id != first.snapshot_id

    check = await restic.check(read_data_subset="50%")
    assert check.ok and check.num_errors == 0
    stats = await restic.stats()
    assert stats.snapshots_count == 2
    assert stats.total_size > 0 and stats.total_size_human.endswith("iB")


async def test_forget_keeps_what_the_policy_says(
    storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    src = tmp_path / "small"
    src.mkdir()
    (src / "f").write_text("x")
    restic = make_restic(storage)
    await restic.init()
    times = {
        "d1-10": datetime(2024, 3, 1, 10, tzinfo=UTC),
        "d1-18": datetime(2024, 3, 1, 18, tzinfo=UTC),
        "d2-10": datetime(2024, 3, 2, 10, tzinfo=UTC),
        "d3-10": datetime(2024, 3, 3, 10, tzinfo=UTC),
        "d3-18": datetime(2024, 3, 3, 18, tzinfo=UTC),
        "d4-09": datetime(2024, 3, 4, 9, tzinfo=UTC),
    }
    ids = {}
    for name, when in times.items():
        ids[name] = (await restic.backup([str(src)], host="h", time=when)).snapshot_id
    # keepLast 2 -> d4-09, d3-18; keepDaily 3 -> newest of 4 Mar, 3 Mar, 2 Mar.
    keep = {ids["d4-09"], ids["d3-18"], ids["d2-10"]}

    policy = RetentionPolicy(name="p", keep_last=2, keep_daily=3, prune=True)
    dry = await restic.forget(policy.model_copy(update={"dry_run": True}))
    assert {s.id for s in dry.kept} == keep
    assert len(await restic.snapshots()) == 6  # dry run removed nothing

    result = await restic.forget(policy)
    assert {s.id for s in result.kept} == keep
    assert {s.id for s in result.removed} == set(ids.values()) - keep
    assert {s.id for s in await restic.snapshots()} == keep
    assert (await restic.check()).ok
