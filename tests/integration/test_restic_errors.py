"""Failures people meet, each as its own error with an actionable message; no data lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from stash.api.common import RetentionPolicy
from stash.api.repository import Backend
from stash.restic import (
    BackendAuthFailed,
    BackendUnreachable,
    BucketNotFound,
    RepositoryLocked,
    RepositoryNotFound,
    Restic,
    SnapshotNotFound,
    WrongPassword,
)
from tests.integration.conftest import MakeRestic
from tests.support.storage import (
    MotoServer,
    RestServer,
    Storage,
    StorageUnavailable,
    free_port,
    make_storage,
)


async def one_snapshot(restic: Restic, tmp_path: Path) -> str:
    src = tmp_path / "data"
    src.mkdir(exist_ok=True)
    (src / "important.txt").write_text("do not lose me")
    await restic.init()
    summary = await restic.backup([str(src)], host="h")
    assert summary.snapshot_id
    return summary.snapshot_id


async def wait_for_lock(restic: Restic, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await restic.lock_ids():
        assert time.monotonic() < deadline, "restic never took its lock"
        await asyncio.sleep(0.2)


async def test_wrong_password(storage: Storage, make_restic: MakeRestic, tmp_path: Path) -> None:
    good = make_restic(storage)
    snap = await one_snapshot(good, tmp_path)
    bad = make_restic(storage, password="not the password")
    with pytest.raises(WrongPassword) as info:
        await bad.snapshots()
    assert "RESTIC_PASSWORD" in info.value.hint
    assert "not the password" not in str(info.value)
    with pytest.raises(WrongPassword):
        await bad.init()  # never "re-initialises" over an existing repository
    assert [s.id for s in await good.snapshots()] == [snap]


async def test_missing_bucket(moto: MotoServer, make_restic: MakeRestic, tmp_path: Path) -> None:
    storage = make_storage("s3", tmp_path, moto=moto)
    s3 = storage.backend.s3
    assert s3 is not None
    missing = Backend.model_validate(
        {"s3": {"endpoint": s3.endpoint, "bucket": "no-such-bucket", "prefix": "x"}}
    )
    restic = make_restic(Storage("s3", missing, storage.secret, "nowhere"), unreachable_timeout=600)
    started = time.monotonic()
    with pytest.raises(BucketNotFound) as info:
        await restic.snapshots()
    # restic alone would retry for 15 minutes; the driver stops at its first retry.
    assert time.monotonic() - started < 60
    assert isinstance(info.value, RepositoryNotFound)
    assert "bucket" in info.value.message and "bucket" in info.value.hint


async def test_missing_repository_then_init_creates_it(
    local_storage: Storage, make_restic: MakeRestic
) -> None:
    restic = make_restic(local_storage)
    with pytest.raises(RepositoryNotFound) as info:
        await restic.snapshots()
    assert "initialise" in info.value.hint
    assert (await restic.init()).created
    assert await restic.snapshots() == []


async def test_stopped_rest_server_then_back(
    rest_server_bin: str, make_restic: MakeRestic, tmp_path: Path
) -> None:
    server = RestServer(rest_server_bin, tmp_path / "rest-data", tmp_path / "rest.log")
    try:
        server.start()
    except StorageUnavailable as exc:
        pytest.fail(f"rest-server could not start: {exc}")
    try:
        storage = make_storage("rest", tmp_path, rest=server)
        restic = make_restic(storage)
        snap = await one_snapshot(restic, tmp_path)
        server.stop()
        started = time.monotonic()
        with pytest.raises(BackendUnreachable) as info:
            await restic.snapshots()
        assert time.monotonic() - started < 120
        assert "connection refused" in info.value.message
        assert "server is running" in info.value.hint
        server.start()
        assert [s.id for s in await restic.snapshots()] == [snap]
        assert (await restic.check()).ok
    finally:
        server.stop()


async def test_s3_endpoint_down(moto: MotoServer, make_restic: MakeRestic, tmp_path: Path) -> None:
    down = Backend.model_validate(
        {"s3": {"endpoint": f"http://127.0.0.1:{free_port()}", "bucket": "stash-down"}}
    )
    storage = make_storage("s3", tmp_path, moto=moto)
    with pytest.raises(BackendUnreachable):
        await make_restic(Storage("s3", down, storage.secret, "down")).snapshots()


async def test_rest_credentials_refused(
    rest_server_auth: RestServer, make_restic: MakeRestic, tmp_path: Path
) -> None:
    storage = make_storage("rest-auth", tmp_path, rest=rest_server_auth)
    snap = await one_snapshot(make_restic(storage), tmp_path)
    wrong = Storage(
        storage.kind,
        storage.backend,
        {**storage.secret, "REST_SERVER_PASSWORD": b"guess"},
        storage.where,
    )
    with pytest.raises(BackendAuthFailed) as info:
        await make_restic(wrong).snapshots()
    assert "401" in info.value.message
    assert "guess" not in str(info.value)
    assert [s.id for s in await make_restic(storage).snapshots()] == [snap]


async def test_unknown_snapshot(
    local_storage: Storage, make_restic: MakeRestic, tmp_path: Path
) -> None:
    restic = make_restic(local_storage)
    await one_snapshot(restic, tmp_path)
    with pytest.raises(SnapshotNotFound):
        await restic.restore(str(tmp_path / "out"), "deadbeef")
    with pytest.raises(SnapshotNotFound):
        await restic.restore(str(tmp_path / "out"), host="no-such-host")


async def test_locked_repository(storage: Storage, make_restic: MakeRestic, tmp_path: Path) -> None:
    restic = make_restic(storage)
    snap = await one_snapshot(restic, tmp_path)
    holder = asyncio.create_task(
        restic.backup_command(["sleep", "60"], filename="slow.dump", host="busy-pod")
    )
    try:
        await wait_for_lock(restic)
        with pytest.raises(RepositoryLocked) as info:
            await restic.forget(RetentionPolicy(name="p", keep_last=1, prune=True))
        error = info.value
        assert error.holder is not None and error.holder.pid > 0
        assert f"PID {error.holder.pid}" in error.hint
        [lock] = error.locks
        assert lock.pid == error.holder.pid
        assert lock.hostname == error.holder.host
        assert lock.username
        assert not lock.exclusive
    finally:
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
    assert [s.id for s in await restic.snapshots()] == [snap]
    assert await restic.lock_ids() == []
    result = await restic.forget(RetentionPolicy(name="p", keep_last=1))
    assert [s.id for s in result.kept] == [snap]
