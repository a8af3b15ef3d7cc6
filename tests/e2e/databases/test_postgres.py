"""PostgreSQL through the addon (§9, scenario S6) on a real server: a BackupConfiguration
of an AppBinding with `postgres-backup-15` streams pg_dumpall into restic; after the
database and its role are dropped, a RestoreSession with `postgres-restore-15` brings back
every row (counts and order-independent checksums), the view, the function and the role
with its grants. A dump killed half-way is a Failed session naming the tool's exit and
leaves no snapshot. The password is in no argument list, log, Event or status.

Data: STASH_DB_TEST_ROWS order rows (default 60000, about 6 MB of dump)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path

import pytest

from stash.kube.client import Kube
from stash.kube.resources import SECRETS
from stash.pki import issue_ca
from stash_dev.podrunner import PodRunner
from tests.e2e.databases.world import ArgvWatch, World
from tests.support.databases import PostgresServer
from tests.support.storage import RestServer

pytestmark = pytest.mark.cluster
ROWS = int(os.environ.get("STASH_DB_TEST_ROWS", "60000"))
READER_PASSWORD = "reader-Pw:1"
TABLES = ("customers", "orders", "blobs")


def _schema(db: str, reader: str) -> list[str]:
    return [
        "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text)",
        "INSERT INTO customers SELECT g, 'name-' || g, 'user' || g || '@example.com' "
        f"FROM generate_series(1, {max(ROWS // 3, 1)}) g",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers, "
        "amount numeric(10,2), note text, created timestamptz)",
        "INSERT INTO orders (customer_id, amount, note, created) "
        f"SELECT 1 + g % {max(ROWS // 3, 1)}, (g % 1000) / 7.0, "
        "md5(g::text) || repeat('x', g % 50), "
        f"'2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, {ROWS}) g",
        "CREATE TABLE blobs (id int PRIMARY KEY, data bytea)",
        "INSERT INTO blobs SELECT g, decode(repeat(md5(g::text), 8), 'hex') "
        "FROM generate_series(1, 500) g",
        "CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100",
        "CREATE FUNCTION order_total(c int) RETURNS numeric LANGUAGE sql AS "
        "$$ SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = c $$",
        f"CREATE ROLE {reader} LOGIN PASSWORD '{READER_PASSWORD}'",
        f"GRANT CONNECT ON DATABASE {db} TO {reader}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}",
    ]


def _fingerprint(pg: PostgresServer, db: str) -> dict[str, str]:
    out = {}
    for table in TABLES:
        out[table] = pg.sql(
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(md5(t::text), ',' "
            f"ORDER BY md5(t::text))), '') FROM {table} t",
            db,
        )
    return out


@pytest.fixture
def shop(postgres: PostgresServer, namespace: str) -> tuple[str, str]:
    """A database and a reader role of this test (dropped afterwards)."""
    suffix = namespace[-6:]
    db, reader = f"shop_{suffix}", f"reader_{suffix}"
    postgres.sql(f"CREATE DATABASE {db}")
    for statement in _schema(db, reader):
        postgres.sql(statement, db)
    yield db, reader
    postgres.sql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    postgres.sql(f"DROP ROLE IF EXISTS {reader}")


def _world(kube: Kube, runner: PodRunner, ns: str, restic: str, rest: RestServer) -> World:
    return World(kube, runner, ns, restic, rest)


def _binding(postgres: PostgresServer) -> dict[str, object]:
    return {
        "type": "kubedb.com/postgres",
        "version": "15.4",
        "clientConfig": {"url": f"postgresql://127.0.0.1:{postgres.port}/"},
    }


async def test_round_trip_with_roles_view_and_function(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    postgres: PostgresServer,
    shop: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    db, reader = shop
    before = _fingerprint(postgres, db)
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    await world.setup({"username": "postgres", "password": postgres.password}, _binding(postgres))
    with ArgvWatch(postgres.password) as argv:
        done = await world.backup({"name": "postgres-backup-15"})
        assert done["status"]["phase"] == "Succeeded", done["status"]
        (host,) = done["status"]["targets"][0]["stats"]
        assert host["snapshots"][0]["path"] == "/dumpfile.sql"

        postgres.sql(f"DROP DATABASE {db} WITH (FORCE)")
        postgres.sql(f"DROP ROLE {reader}")
        rs = await world.restore({"name": "postgres-restore-15"})
        assert rs["status"]["phase"] == "Succeeded", (rs["status"], world.logs[-1][-3000:])
    assert _fingerprint(postgres, db) == before
    assert before["orders"].startswith(f"{ROWS}:")
    assert postgres.sql("SELECT count(*) FROM big_orders", db) == postgres.sql(
        "SELECT count(*) FROM orders WHERE amount > 100", db
    )
    assert postgres.sql("SELECT order_total(7)", db) == postgres.sql(
        "SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = 7", db
    )
    # the role came back with its password and grants
    assert postgres.login(reader, READER_PASSWORD, db, "SELECT count(*) FROM customers") == str(
        ROWS // 3
    )
    assert argv.samples > 10 and argv.found == []
    published = await world.published() + caplog.text
    assert postgres.password not in published


async def test_dump_killed_mid_stream_fails_and_keeps_no_snapshot(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    postgres: PostgresServer,
    shop: tuple[str, str],
    tmp_path: Path,
) -> None:
    # A pg_dumpall that writes the first 300 kB of the real dump and a last word, then
    # is killed.
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    tool = wrappers / "pg_dumpall"
    tool.write_text(
        '#!/bin/sh\n/usr/bin/pg_dumpall "$@" | head -c 300000\n'
        "echo 'pg_dumpall: error: server closed the connection unexpectedly' >&2\n"
        "kill -9 $$\n"
    )
    tool.chmod(0o755)
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    world.path_prefix = str(wrappers)
    await world.setup({"username": "postgres", "password": postgres.password}, _binding(postgres))
    done = await world.backup({"name": "postgres-backup-15"})
    assert done["status"]["phase"] == "Failed"
    (host,) = done["status"]["targets"][0]["stats"]
    assert "pg_dumpall did not complete" in host["error"], host
    assert "signal: killed" in host["error"], host
    assert "server closed the connection unexpectedly" in host["error"], host
    assert world.snapshots() == []


async def test_pg_dump_of_one_database_in_custom_format_round_trips(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    postgres: PostgresServer,
    shop: tuple[str, str],
) -> None:
    db, reader = shop
    before = _fingerprint(postgres, db)
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    binding = {
        **_binding(postgres),
        "clientConfig": {"url": f"postgres://127.0.0.1:{postgres.port}/{db}"},
    }
    await world.setup({"username": "postgres", "password": postgres.password}, binding)
    params = [{"name": "backupCMD", "value": "pg_dump"}, {"name": "args", "value": "--no-comments"}]
    done = await world.backup({"name": "postgres-backup-15", "params": params})
    assert done["status"]["phase"] == "Succeeded", (done["status"], world.logs[0][-3000:])
    (host,) = done["status"]["targets"][0]["stats"]
    assert host["snapshots"][0]["path"] == "/dumpfile.dump"
    postgres.sql(f"DROP DATABASE {db} WITH (FORCE)")
    rs = await world.restore({"name": "postgres-restore-15"})
    assert rs["status"]["phase"] == "Succeeded", (rs["status"], world.logs[-1][-3000:])
    assert _fingerprint(postgres, db) == before
    # the grants on the restored tables are the dump's (the role itself was kept)
    assert postgres.login(reader, READER_PASSWORD, db, "SELECT count(*) FROM blobs") == "500"


async def test_tls_with_the_appbinding_s_ca_verifies_the_server(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    postgres: PostgresServer,
) -> None:
    # Role tls_only is rejected on plain TCP (pg_hba hostnossl ... reject): the backup
    # works only over TLS, and with the CA from tlsSecret libpq verifies the server.
    password = "tls-Only-" + namespace[-6:]
    postgres.sql("DROP ROLE IF EXISTS tls_only")
    postgres.sql(f"CREATE ROLE tls_only SUPERUSER LOGIN PASSWORD '{password}'")
    await run_operator()
    world = _world(rawkube, runner, namespace, restic_bin, rest_server)
    await rawkube.create(
        SECRETS,
        {"metadata": {"name": "db-tls"}, "stringData": {"ca.crt": postgres.ca_pem}},
        namespace,
    )
    binding = {**_binding(postgres), "tlsSecret": {"name": "db-tls"}}
    await world.setup({"username": "tls_only", "password": password}, binding)
    done = await world.backup({"name": "postgres-backup-15"})
    assert done["status"]["phase"] == "Succeeded", (done["status"], world.logs[0][-3000:])
    assert "PGSSLROOTCERT" not in json.dumps(done)
    # Another CA: the server's certificate no longer verifies.
    other = issue_ca("someone-else", dt.datetime.now(dt.UTC), dt.timedelta(days=1))
    await rawkube.patch(
        SECRETS, "db-tls", {"stringData": {"ca.crt": other.cert_pem.decode()}}, namespace
    )
    await asyncio.sleep(1.1)  # a new session name (they are per second)
    refused = await world.another_backup()
    assert refused["status"]["phase"] == "Failed"
    (host,) = refused["status"]["targets"][0]["stats"]
    assert "certificate verify failed" in host["error"], host
    postgres.sql("DROP ROLE tls_only")
