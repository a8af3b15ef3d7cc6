"""MongoDB through the addon (§9) on a real MongoDB wire-protocol server (FerretDB v1 on
PostgreSQL, which checks the PLAIN logins): a BackupConfiguration of an AppBinding
(`mongodb://host:port/<db>`, user and password in its Secret) with `mongodb-backup-7.0`
and the Task params `authMechanism=PLAIN`, `numParallelCollections` streams
`mongodump --archive` into restic; after the database is dropped, `mongodb-restore-7.0`
(`mongorestore --archive`) brings back three collections (20k documents) with equal
document counts and equal hashes of their sorted documents, and the secondary index. A
dump killed half-way is a Failed session with no snapshot; a wrong password is a Failed
session that says what to fix. The password is in no argument list, log, Event or
status."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stash.kube.client import JSON, Kube
from stash_dev.podrunner import PodRunner
from tests.e2e.databases.world import ArgvWatch, World
from tests.support.nosql_servers import FerretDBServer, database_tools_bin
from tests.support.storage import RestServer

pytestmark = pytest.mark.cluster
COUNTS = {"customers": 4000, "orders": 15000, "events": 1000}


def _documents(collection: str, n: int) -> list[dict[str, Any]]:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    if collection == "customers":
        return [
            {"_id": i, "name": f"name-{i}", "email": f"user{i}@example.com", "vip": i % 7 == 0}
            for i in range(n)
        ]
    if collection == "orders":
        return [
            {
                "_id": i,
                "customer_id": i % COUNTS["customers"],
                "amount": (i % 1000) / 7,
                "lines": [{"sku": f"sku-{j}", "qty": j + 1} for j in range(i % 4)],
                "note": "x" * (i % 50),
                "created": start + dt.timedelta(minutes=i),
            }
            for i in range(n)
        ]
    return [
        {"_id": i, "kind": "login" if i % 2 else "logout", "payload": bytes(range(i % 256))}
        for i in range(n)
    ]


def _fingerprint(server: FerretDBServer, db: str) -> dict[str, Any]:
    """Per collection: (count, sha256 of the BSON of its documents sorted by _id)."""
    import bson

    out: dict[str, Any] = {}
    with server.client() as client:
        for name in COUNTS:
            docs = sorted(client[db][name].find(), key=lambda d: d["_id"])
            digest = hashlib.sha256(b"".join(bson.encode(d) for d in docs)).hexdigest()
            out[name] = (len(docs), digest)
        indexes = client[db]["orders"].index_information()
        out["indexes"] = sorted((k, str(v["key"])) for k, v in indexes.items())
    return out


@pytest.fixture
def shop(ferretdb: FerretDBServer, namespace: str) -> Iterator[str]:
    """A database of this test: three collections and an index (dropped afterwards)."""
    db = f"shop_{namespace[-6:]}"
    with ferretdb.client() as client:
        for name, n in COUNTS.items():
            client[db][name].insert_many(_documents(name, n), ordered=False)
        client[db]["orders"].create_index([("customer_id", 1), ("created", -1)], name="by_cust")
    yield db
    with ferretdb.client() as client:
        client.drop_database(db)


def _binding(server: FerretDBServer, db: str) -> dict[str, object]:
    return {
        "type": "kubedb.com/mongodb",
        "version": "7.0.42",
        "clientConfig": {"url": f"mongodb://127.0.0.1:{server.port}/{db}"},
    }


def _task(name: str, parallel: str = "1") -> JSON:
    return {
        "name": name,
        "params": [
            {"name": "authMechanism", "value": "PLAIN"},
            {"name": "numParallelCollections", "value": parallel},
        ],
    }


def _world(kube: Kube, runner: PodRunner, ns: str, restic: str, rest: RestServer) -> World:
    world = World(kube, runner, ns, restic, rest)
    world.path_prefix = database_tools_bin()
    return world


async def test_round_trip_of_three_collections_and_an_index(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    ferretdb: FerretDBServer,
    shop: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = _fingerprint(ferretdb, shop)
    assert {name: before[name][0] for name in COUNTS} == COUNTS
    assert any(name == "by_cust" for name, _ in before["indexes"])
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    secret = {"username": ferretdb.user, "password": ferretdb.password}
    await world.setup(secret, _binding(ferretdb, shop))
    with ArgvWatch(ferretdb.password) as argv:
        done = await world.backup(_task("mongodb-backup-7.0", parallel="2"))
        assert done["status"]["phase"] == "Succeeded", (done["status"], world.logs[0][-3000:])
        (host,) = done["status"]["targets"][0]["stats"]
        assert host["snapshots"][0]["path"] == "/dumpfile.archive"
        with ferretdb.client() as client:
            client.drop_database(shop)
            assert shop not in client.list_database_names()
        rs = await world.restore(_task("mongodb-restore-7.0"))
        assert rs["status"]["phase"] == "Succeeded", (rs["status"], world.logs[-1][-3000:])
    assert _fingerprint(ferretdb, shop) == before
    assert argv.samples > 10 and argv.found == []
    assert ferretdb.password not in await world.published() + caplog.text


async def test_dump_killed_mid_stream_fails_and_keeps_no_snapshot(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    ferretdb: FerretDBServer,
    shop: str,
    tmp_path: Path,
) -> None:
    # A mongodump that writes the first 100 kB of the real archive, then is killed (the
    # probe, which dumps nothing into /dev/null, runs the real tool).
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    tool = wrappers / "mongodump"
    real = Path(database_tools_bin()) / "mongodump"
    tool.write_text(
        '#!/bin/sh\ncase " $* " in *" --archive "*) ;; *) exec ' + f'{real} "$@";; esac\n'
        f'{real} "$@" | head -c 100000\nkill -9 $$\n'
    )
    tool.chmod(0o755)
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    world.path_prefix = f"{wrappers}:{world.path_prefix}"
    secret = {"username": ferretdb.user, "password": ferretdb.password}
    await world.setup(secret, _binding(ferretdb, shop))
    done = await world.backup(_task("mongodb-backup-7.0"))
    assert done["status"]["phase"] == "Failed"
    (host,) = done["status"]["targets"][0]["stats"]
    assert "mongodump did not complete" in host["error"], host
    assert "signal: killed" in host["error"], host
    assert world.snapshots() == []


async def test_wrong_password_fails_with_what_to_fix_and_leaks_nowhere(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    ferretdb: FerretDBServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wr0ng-pa55word-" + namespace[-6:]
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    await world.setup({"username": ferretdb.user, "password": wrong}, _binding(ferretdb, "x"))
    await world.login_refused(
        _task("mongodb-backup-7.0"), wrong, "MongoDB", "password authentication failed"
    )
    assert wrong not in caplog.text
