"""Driver commands whose behaviour does not depend on the storage kind (local repo)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from stash.restic import (
    BackupCommandFailed,
    BackupIncomplete,
    BackupProgress,
    ProgressStream,
    Restic,
    ResticOptions,
    ResticTooOld,
    WrongPassword,
)
from stash.restic.models import RestoreProgress
from stash.restic.version import MINIMUM
from tests.integration.conftest import MakeRestic
from tests.support.storage import Storage


async def test_backup_of_a_command_s_output(
    local_storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    restic = make_restic(local_storage)
    await restic.init()
    dump = "CREATE TABLE t (id int);\n" + "INSERT INTO t VALUES (1);\n" * 1000
    summary = await restic.backup_command(
        ["sh", "-c", 'printf "%s" "$0"', dump], filename="db/dump.sql", host="pg-0"
    )
    assert summary.snapshot_id and summary.files_new == 1
    await restic.restore(str(tmp_path / "out"), summary.snapshot_id)
    assert (tmp_path / "out" / "db" / "dump.sql").read_text() == dump


@pytest.mark.parametrize(
    "command",
    [
        ["sh", "-c", "echo 'half a dump'; exit 3"],  # fails after writing some output
        ["sh", "-c", "echo partial; kill -9 $$"],  # killed mid-dump
        ["true"],  # succeeds but writes nothing
    ],
    ids=["fails", "killed", "empty"],
)
async def test_failed_or_empty_dump_is_never_a_snapshot(
    local_storage: Storage, make_restic: MakeRestic, command: list[str]
) -> None:
    restic = make_restic(local_storage)
    await restic.init()
    good = await restic.backup_command(["echo", "good"], filename="dump.sql")
    with pytest.raises(BackupCommandFailed):
        await restic.backup_command(command, filename="dump.sql")
    # `restore latest` still finds the good dump, not a broken or empty one.
    assert [s.id for s in await restic.snapshots()] == [good.snapshot_id]


async def test_unreadable_file_is_an_incomplete_backup(
    local_storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok").write_text("fine")
    (src / "gone").symlink_to(src / "ok")
    restic = make_restic(local_storage)
    await restic.init()
    # A path that vanished is something restic reports as unreadable (exit 3).
    with pytest.raises(BackupIncomplete) as info:
        await restic.backup([str(src), str(tmp_path / "does-not-exist")])
    assert info.value.summary is not None and info.value.summary.snapshot_id
    assert any("does-not-exist" in e for e in info.value.errors)


async def test_progress_events_as_async_iterator(
    local_storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    restic = make_restic(local_storage, progress_fps=20.0)
    await restic.init()
    stream = ProgressStream()
    task = stream.follow(
        asyncio.create_task(
            restic.backup_command(
                ["sh", "-c", "sleep 1.5; echo done"], filename="slow", on_progress=stream
            )
        )
    )
    events = [event async for event in stream]
    summary = await task
    assert summary.snapshot_id
    assert events and all(isinstance(e, BackupProgress) for e in events)
    seen: list[RestoreProgress | BackupProgress] = []
    await restic.restore(str(tmp_path / "out"), on_progress=seen.append)
    assert all(isinstance(e, RestoreProgress) for e in seen)


async def test_restore_include_exclude(
    local_storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "skip").mkdir()
    (src / "keep" / "a.txt").write_text("a")
    (src / "keep" / "b.log").write_text("b")
    (src / "skip" / "c.txt").write_text("c")
    restic = make_restic(local_storage)
    await restic.init()
    await restic.backup([str(src)])
    only = tmp_path / "only"
    await restic.restore(str(only), includes=[str(src / "keep")])
    files = sorted(p.name for p in (only / src.relative_to("/")).rglob("*") if p.is_file())
    assert files == ["a.txt", "b.log"]
    without = tmp_path / "without"
    await restic.restore(str(without), excludes=["*.log", "skip"])
    files = sorted(p.name for p in (without / src.relative_to("/")).rglob("*") if p.is_file())
    assert files == ["a.txt"]
    with pytest.raises(ValueError, match="not both"):
        await restic.restore(str(without), includes=["a"], excludes=["b"])


async def test_keys_add_list_remove(local_storage: Storage, make_restic: MakeRestic) -> None:
    restic = make_restic(local_storage)
    await restic.init()
    [original] = await restic.keys()
    assert original.current
    new_id = await restic.add_key("a brand new password", host="ops", user="alice")
    keys = {k.id: k for k in await restic.keys()}
    assert set(keys) == {original.id, new_id}
    assert (keys[new_id].host_name, keys[new_id].user_name) == ("ops", "alice")

    other = make_restic(local_storage, password="a brand new password")
    assert (await other.config()).id == (await restic.config()).id
    await restic.remove_key(new_id)
    with pytest.raises(WrongPassword):
        await other.snapshots()
    # The key file written for `key add` is gone from the scratch directory.
    assert restic.options.scratch_dir is not None
    assert not [p for p in os.listdir(restic.options.scratch_dir) if p.startswith("restic-key")]


async def test_check_finds_damaged_data(
    local_storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "blob").write_bytes(os.urandom(200_000))
    restic = make_restic(local_storage)
    await restic.init()
    await restic.backup([str(src)])
    assert (await restic.check(read_data_subset="100%")).ok
    repo = Path(local_storage.where)
    pack = max(
        (p for p in (repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    data = bytearray(pack.read_bytes())
    data[100:200] = bytes(100)
    pack.write_bytes(bytes(data))
    result = await restic.check(read_data_subset="100%")
    assert not result.ok
    assert result.num_errors > 0 or result.messages


async def test_installed_restic_is_new_enough(restic_bin: str, local_storage: Storage) -> None:
    restic = Restic(local_storage.target(Path("/unused")), ResticOptions(binary=restic_bin))
    assert await restic.version() >= MINIMUM


async def test_too_old_restic_is_refused_with_both_versions(
    tmp_path: Path, local_storage: Storage
) -> None:
    fake = tmp_path / "restic"
    fake.write_text("#!/bin/sh\necho 'restic 0.16.4 compiled with go1.21.6 on linux/amd64'\n")
    fake.chmod(0o755)
    restic = Restic(local_storage.target(tmp_path), ResticOptions(binary=str(fake)))
    with pytest.raises(ResticTooOld) as info:
        await restic.snapshots()
    assert "0.16.4" in str(info.value) and str(MINIMUM) in str(info.value)


async def test_restic_runs_niced_with_its_temp_dir_and_no_secret_in_argv(
    local_storage: Storage, make_restic: MakeRestic
) -> None:
    restic = make_restic(local_storage, nice=7, ionice_class=3, limit_upload=10_000)
    await restic.init()
    task = asyncio.create_task(restic.backup_command(["sleep", "60"], filename="x"))
    try:
        deadline = time.monotonic() + 60
        while not (locks := await restic.locks()):
            assert time.monotonic() < deadline, "restic never took its lock"
            await asyncio.sleep(0.2)
        pid = locks[0].pid
        with open(f"/proc/{pid}/stat") as f:
            nice = int(f.read().rpartition(")")[2].split()[16])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
        proc = await asyncio.create_subprocess_exec(
            "ionice", "-p", str(pid), stdout=asyncio.subprocess.PIPE
        )
        ionice = (await proc.communicate())[0].decode()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert nice == min(os.nice(0) + 7, 19), "an adjustment of the runner's own niceness"
    assert "idle" in ionice
    assert b"--limit-upload" in argv
    password = local_storage.secret["RESTIC_PASSWORD"]
    assert not any(password in a for a in argv)
    assert restic.options.temp_dir is not None
    assert env[b"TMPDIR"] == restic.options.temp_dir.encode()
