"""Redis through the addon (§9) on a real server (Debian redis-server 7.0): a
BackupConfiguration of an AppBinding (`redis://host:port/<db>`, password in its Secret)
with `redis-backup-7.0` streams redis-dump-go's RESP into restic; after the database is
flushed, `redis-restore-7.0` (`redis-cli --pipe`) brings back every string, hash, list,
set and sorted set with equal values, and every key with a TTL expires at the same
second. A dump killed half-way is a Failed session with no snapshot; a wrong password is
a Failed session that says what to fix. The password is in no argument list, log, Event
or status."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stash.kube.client import Kube
from stash_dev.podrunner import PodRunner
from tests.e2e.databases.world import ArgvWatch, World
from tests.support.nosql_servers import RedisServer, RespClient, database_tools_bin
from tests.support.storage import RestServer

pytestmark = pytest.mark.cluster
STRINGS = 3000


def _fill(c: RespClient) -> None:
    """Strings (one binary, one 1 MB), hashes, lists, sets, sorted sets, TTL keys."""
    expire_at = int(time.time()) + 3600
    commands: list[tuple[str | bytes, ...]] = []
    for i in range(STRINGS):
        commands.append(("SET", f"s:{i}", f"value-{i}-" + "x" * (i % 40)))
    commands.append(("SET", "bin", bytes(range(256)) * 4))
    commands.append(("SET", "big", "B" * 1_000_000))
    for i in range(50):
        commands.append(("HSET", f"h:{i}", *(x for j in range(30) for x in (f"f{j}", f"{i}.{j}"))))
        commands.append(("RPUSH", f"l:{i}", *(f"item {j}" for j in range(40)), "dup", "dup"))
        commands.append(("SADD", f"set:{i}", *(f"m{j}" for j in range(25))))
        commands.append(("ZADD", f"z:{i}", *(x for j in range(25) for x in (f"{j / 3}", f"z{j}"))))
    commands.append(("RPUSH", "biglist", *(str(j) for j in range(2500))))  # > one batch
    for i in range(20):
        commands.append(("SET", f"ttl:{i}", f"short-lived {i}"))
        commands.append(("EXPIREAT", f"ttl:{i}", str(expire_at + i * 60)))
    commands.append(("HSET", "ttl:hash", "a", "1"))
    commands.append(("EXPIREAT", "ttl:hash", str(expire_at)))
    for command in commands:
        c.send(*command)
    for _ in commands:
        c.reply()


def _content(c: RespClient) -> tuple[dict[bytes, Any], dict[bytes, int]]:
    """(key -> (type, value) with members sorted where order is not kept, key -> the
    absolute expiry in ms of keys that have one)."""
    values: dict[bytes, Any] = {}
    expiry: dict[bytes, int] = {}
    for key in c.call("KEYS", "*"):
        kind = c.call("TYPE", key)
        if kind == "string":
            value: Any = c.call("GET", key)
        elif kind == "hash":
            flat = c.call("HGETALL", key)
            value = sorted(zip(flat[::2], flat[1::2], strict=True))
        elif kind == "list":
            value = c.call("LRANGE", key, "0", "-1")
        elif kind == "set":
            value = sorted(c.call("SMEMBERS", key))
        elif kind == "zset":
            value = c.call("ZRANGE", key, "0", "-1", "WITHSCORES")
        else:
            raise AssertionError(f"unexpected type {kind} of {key!r}")
        values[key] = (kind, value)
        at = c.call("PEXPIRETIME", key)
        if at >= 0:
            expiry[key] = at
    return values, expiry


@pytest.fixture
def redis_db(redis: RedisServer) -> Iterator[int]:
    """A database number of this test, filled (flushed afterwards)."""
    db = redis.new_db()
    client = redis.client(db)
    _fill(client)
    yield db
    client.call("FLUSHDB")
    client.close()


def _binding(redis: RedisServer, db: int) -> dict[str, object]:
    return {
        "type": "kubedb.com/redis",
        "version": "7.0.15",
        "clientConfig": {"url": f"redis://127.0.0.1:{redis.port}/{db}"},
    }


def _world(kube: Kube, runner: PodRunner, ns: str, restic: str, rest: RestServer) -> World:
    world = World(kube, runner, ns, restic, rest)
    world.path_prefix = database_tools_bin()
    return world


async def test_round_trip_keeps_every_type_and_ttl(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    redis: RedisServer,
    redis_db: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = redis.client(redis_db)
    before, expiry = _content(client)
    assert len(before) == STRINGS + 2 + 4 * 50 + 1 + 21 and len(expiry) == 21
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    await world.setup({"password": redis.password}, _binding(redis, redis_db))
    with ArgvWatch(redis.password) as argv:
        done = await world.backup({"name": "redis-backup-7.0"})
        assert done["status"]["phase"] == "Succeeded", (done["status"], world.logs[0][-3000:])
        (host,) = done["status"]["targets"][0]["stats"]
        assert host["snapshots"][0]["path"] == "/dumpfile.resp"
        client.call("FLUSHDB")
        assert client.call("DBSIZE") == 0
        rs = await world.restore({"name": "redis-restore-7.0"})
        assert rs["status"]["phase"] == "Succeeded", (rs["status"], world.logs[-1][-3000:])
    after, expiry_after = _content(client)
    assert after == before
    assert expiry_after.keys() == expiry.keys()
    late = {
        k: (expiry[k], expiry_after[k]) for k in expiry if abs(expiry[k] - expiry_after[k]) > 1000
    }
    assert late == {}, late
    assert redis.client(0).call("DBSIZE") == 0  # only the AppBinding's database was dumped
    assert argv.samples > 10 and argv.found == []
    assert redis.password not in await world.published() + caplog.text


async def test_dump_killed_mid_stream_fails_and_keeps_no_snapshot(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    redis: RedisServer,
    redis_db: int,
    tmp_path: Path,
) -> None:
    # A redis-dump-go that writes the first 20 kB of the real dump, then is killed.
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    tool = wrappers / "redis-dump-go"
    real = Path(database_tools_bin()) / "redis-dump-go"
    tool.write_text(f'#!/bin/sh\n{real} "$@" | head -c 20000\nkill -9 $$\n')
    tool.chmod(0o755)
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    world.path_prefix = f"{wrappers}:{world.path_prefix}"
    await world.setup({"password": redis.password}, _binding(redis, redis_db))
    done = await world.backup({"name": "redis-backup-7.0"})
    assert done["status"]["phase"] == "Failed"
    (host,) = done["status"]["targets"][0]["stats"]
    assert "redis-dump-go did not complete" in host["error"], host
    assert "signal: killed" in host["error"], host
    assert world.snapshots() == []


async def test_wrong_password_fails_with_what_to_fix_and_leaks_nowhere(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wr0ng-pa55word-" + namespace[-6:]
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    await world.setup({"password": wrong}, _binding(redis, 0))
    await world.login_refused({"name": "redis-backup-7.0"}, wrong, "Redis", "WRONGPASS")
    assert wrong not in caplog.text
