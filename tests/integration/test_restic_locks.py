"""Cancelling restic and stale locks, with real restic processes holding real locks."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from stash.restic import Restic, remove_stale_locks
from tests.integration.conftest import MakeRestic
from tests.support.storage import Storage


def group_members(pgid: int) -> list[int]:
    """PIDs whose process group is `pgid` (zombies included)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry))
    return members


async def wait_for_locks(restic: Restic, count: int, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(ids := await restic.lock_ids()) < count:
        assert time.monotonic() < deadline, f"expected {count} lock(s), have {ids}"
        await asyncio.sleep(0.2)
    return ids


async def test_cancel_stops_restic_group_and_releases_its_lock(
    storage: Storage, make_restic: MakeRestic
) -> None:
    restic = make_restic(storage)
    await restic.init()
    task = asyncio.create_task(restic.backup_command(["sleep", "120"], filename="never.sql"))
    await wait_for_locks(restic, 1)
    [lock] = await restic.locks()
    assert group_members(lock.pid), "restic and its dump command run in their own group"

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5 + 3  # SIGTERM suffices; SIGKILL grace is 5 s
    assert group_members(lock.pid) == []  # restic and `sleep`: gone and reaped
    with pytest.raises(ProcessLookupError):
        os.kill(lock.pid, 0)
    assert await restic.lock_ids() == []  # restic released its lock on SIGTERM
    assert await restic.snapshots() == []  # and recorded nothing


async def test_stale_lock_removed_live_lock_kept(
    storage: Storage, make_restic: MakeRestic, restic_bin: str
) -> None:
    restic = make_restic(storage)
    await restic.init()

    # A restic that dies holding its lock: SIGKILL gives it no chance to clean up.
    env = {**os.environ, **restic.target.env}
    argv = [restic_bin, *restic.target.options, "--no-cache", "backup"]
    argv += ["--stdin-from-command", "--stdin-filename", "x", "--", "sleep", "120"]
    doomed = await asyncio.create_subprocess_exec(
        *argv, env=env, start_new_session=True, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_for_locks(restic, 1)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        await doomed.wait()
    [stale] = await restic.locks()
    assert stale.pid == doomed.pid

    # A live one, held by the driver.
    live_task = asyncio.create_task(restic.backup_command(["sleep", "120"], filename="y"))
    try:
        await wait_for_locks(restic, 2)
        [live] = [lk for lk in await restic.locks() if lk.id != stale.id]

        # With the default age threshold both locks are too young to be touched.
        untouched = await remove_stale_locks(restic)
        assert untouched.removed == ()
        assert len(await restic.lock_ids()) == 2

        # Even told every session is final, the live restic's lock stays.
        cleanup = await remove_stale_locks(
            restic, min_age=timedelta(0), session_final=lambda _lock: True
        )
        assert [lk.id for lk in cleanup.removed] == [stale.id]
        assert cleanup.stale_kept == ()
        assert await restic.lock_ids() == [live.id]
    finally:
        live_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await live_task
    assert await restic.lock_ids() == []


async def test_a_dead_lock_of_the_same_host_name_is_removed_only_when_our_ledger_ran_it(
    storage: Storage, make_restic: MakeRestic, restic_bin: str, tmp_path: Path
) -> None:
    # Two pods named `postgres-0` in different namespaces share a repository: each one
    # sees the other's lock under its own host name, with a PID not running here. Only
    # a run this pod's ledger recorded (and that was killed) is this pod's to remove.
    from stash.restic.ledger import RunLedger

    restic = make_restic(storage)
    await restic.init()
    env = {**os.environ, **restic.target.env}
    argv = [restic_bin, *restic.target.options, "--no-cache", "backup"]
    argv += ["--stdin-from-command", "--stdin-filename", "x", "--", "sleep", "120"]
    other = await asyncio.create_subprocess_exec(
        *argv, env=env, start_new_session=True, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await wait_for_locks(restic, 1)
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        await other.wait()
    ledger = RunLedger(tmp_path / "ledger.json")

    not_ours = await remove_stale_locks(restic, min_age=timedelta(0), owned=ledger.may_own)
    assert not_ours.removed == ()
    assert len(await restic.lock_ids()) == 1, "another pod's lock of the same name stays"

    [lock] = await restic.locks()
    ledger.started(lock.pid, lock.time - timedelta(seconds=1))  # as if we had run it
    ours = await remove_stale_locks(restic, min_age=timedelta(0), owned=ledger.may_own)
    assert [lk.id for lk in ours.removed] == [lock.id]
    assert await restic.lock_ids() == []
