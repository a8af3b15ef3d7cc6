"""The database paths of the driver: `dump_into` (a snapshot's file streamed by `restic
dump` through an OS pipe into a command's stdin, both ends' failures told apart) and a
failed `backup_command` saying what the dump tool wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from stash.restic import BackupCommandFailed, ResticError
from tests.integration.conftest import MakeRestic
from tests.support.storage import Storage


async def test_the_file_arrives_byte_for_byte_and_a_failing_loader_is_reported(
    local_storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    restic = make_restic(local_storage)
    await restic.init()
    summary = await restic.backup_command(
        ["sh", "-c", "seq 1 2000000"], filename="dumpfile.sql", host="db-0"
    )
    assert summary.snapshot_id
    out = tmp_path / "loaded.txt"
    done = await restic.dump_into(
        summary.snapshot_id,
        "/dumpfile.sql",
        ["sh", "-c", f"cat > {out}"],
        env={"PATH": "/usr/bin:/bin"},
    )
    assert (done.producer_exit, done.consumer_exit) == (0, 0)
    assert out.read_text() == "".join(f"{i}\n" for i in range(1, 2_000_001))

    failed = await restic.dump_into(
        summary.snapshot_id,
        "/dumpfile.sql",
        ["sh", "-c", "head -c 10 >/dev/null; echo 'ERROR: cannot load' >&2; exit 3"],
        env={"PATH": "/usr/bin:/bin"},
    )
    assert failed.consumer_exit == 3 and "cannot load" in failed.consumer_stderr


async def test_a_failing_restic_dump_raises_when_the_loader_was_fine(
    local_storage: Storage, make_restic: MakeRestic
) -> None:
    restic = make_restic(local_storage)
    await restic.init()
    with pytest.raises(ResticError):
        await restic.dump_into(
            "0123abcd", "/dumpfile.sql", ["sh", "-c", "cat >/dev/null"], env={"PATH": "/bin"}
        )


async def test_a_failed_dump_says_what_the_dump_tool_wrote(
    local_storage: Storage, make_restic: MakeRestic
) -> None:
    restic = make_restic(local_storage)
    await restic.init()
    with pytest.raises(BackupCommandFailed) as failed:
        await restic.backup_command(
            ["sh", "-c", "echo data; echo 'pg_dumpall: error: query failed' >&2; exit 2"],
            filename="dumpfile.sql",
        )
    assert "command failed: exit status 2" in failed.value.message
    assert "the command wrote: pg_dumpall: error: query failed" in failed.value.message
    assert await restic.snapshots() == []
