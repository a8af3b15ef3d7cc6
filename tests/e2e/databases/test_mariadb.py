"""MariaDB through the addon (§9) on a real server: the AppBinding names its addon Tasks
(`mariadb-backup-10.11` / `mariadb-restore-10.11`), so the BackupConfiguration and the
RestoreSession name none; mariadb-dump (`--single-transaction`, routines, triggers,
events, all databases) is streamed into restic. After the database and its user are
dropped, the restore brings back every row (counts and order-independent checksums), the
view, the function, the trigger and the user with its grants. A wrong password (with
the MySQL catalog's `mysql-backup-8.0`) is a Failed session that says what to fix, and
the password is in no argument list, log, Event or status.

Data: STASH_DB_TEST_ROWS order rows (default 60000, about 6 MB of dump)."""

from __future__ import annotations

import os

import pytest

from stash.kube.client import Kube
from stash_dev.podrunner import PodRunner
from tests.e2e.databases.world import ArgvWatch, World
from tests.support.databases import MariaDBServer
from tests.support.storage import RestServer

pytestmark = pytest.mark.cluster
ROWS = int(os.environ.get("STASH_DB_TEST_ROWS", "60000"))
READER_PASSWORD = "reader-Pw;1"
TABLES = ("customers", "orders", "blobs")


def _schema(db: str, reader: str) -> list[str]:
    customers = max(ROWS // 3, 1)
    return [
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, "
        "email VARCHAR(128))",
        "CREATE TRIGGER lower_email BEFORE INSERT ON customers FOR EACH ROW "
        "SET NEW.email = LOWER(NEW.email)",
        "INSERT INTO customers SELECT seq, CONCAT('name-', seq), CONCAT('User', seq, "
        f"'@Example.com') FROM seq_1_to_{customers}",
        "CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT, "
        "amount DECIMAL(10,2), note TEXT, created DATETIME, "
        "FOREIGN KEY (customer_id) REFERENCES customers (id))",
        "INSERT INTO orders (customer_id, amount, note, created) "
        f"SELECT 1 + seq % {customers}, (seq % 1000) / 7, CONCAT(MD5(seq), REPEAT('x', seq % 50)), "
        f"'2024-01-01' + INTERVAL seq MINUTE FROM seq_1_to_{ROWS}",
        "CREATE TABLE blobs (id INT PRIMARY KEY, data BLOB)",
        "INSERT INTO blobs SELECT seq, UNHEX(REPEAT(MD5(seq), 8)) FROM seq_1_to_500",
        "CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 100",
        "CREATE FUNCTION order_total(c INT) RETURNS DECIMAL(20,2) READS SQL DATA "
        "RETURN (SELECT COALESCE(SUM(amount), 0) FROM orders WHERE customer_id = c)",
        f"CREATE USER '{reader}'@'127.0.0.1' IDENTIFIED BY '{READER_PASSWORD}'",
        f"GRANT SELECT, EXECUTE ON {db}.* TO '{reader}'@'127.0.0.1'",
    ]


def _fingerprint(server: MariaDBServer, db: str) -> dict[str, str]:
    out = {}
    for table in TABLES:
        columns = server.sql(
            "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM "
            f"information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}'"
        )
        row = f"CONCAT_WS('|', {', '.join(f'HEX({c})' for c in columns.split(','))})"
        out[table] = server.sql(
            f"SELECT CONCAT(COUNT(*), ':', COALESCE(SUM(CONV(LEFT(MD5({row}), 15), 16, 10)), 0)) "
            f"FROM {table}",
            db,
        )
    return out


@pytest.fixture
def shop(mariadb: MariaDBServer, namespace: str) -> tuple[str, str]:
    """A database and a reader user of this test (dropped afterwards)."""
    suffix = namespace[-6:]
    db, reader = f"shop_{suffix}", f"reader_{suffix}"
    mariadb.sql(f"CREATE DATABASE {db}")
    for statement in _schema(db, reader):
        mariadb.sql(statement, db)
    yield db, reader
    mariadb.sql(f"DROP DATABASE IF EXISTS {db}")
    mariadb.sql(f"DROP USER IF EXISTS '{reader}'@'127.0.0.1'")


def _binding(server: MariaDBServer) -> dict[str, object]:
    return {
        "type": "kubedb.com/mariadb",
        "version": "10.11.19",
        "clientConfig": {"url": f"mysql://127.0.0.1:{server.port}/"},
        "parameters": {
            "stash": {
                "addon": {
                    "backupTask": {"name": "mariadb-backup-10.11"},
                    "restoreTask": {"name": "mariadb-restore-10.11"},
                }
            }
        },
    }


async def test_round_trip_with_user_view_function_and_trigger(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    mariadb: MariaDBServer,
    shop: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    db, reader = shop
    before = _fingerprint(mariadb, db)
    await run_operator()
    world = World(rawkube, runner, namespace, restic_bin, rest_server)
    await world.setup({"username": "root", "password": mariadb.password}, _binding(mariadb))
    with ArgvWatch(mariadb.password) as argv:
        done = await world.backup(None)
        assert done["status"]["phase"] == "Succeeded", (done["status"], world.logs[0][-3000:])
        mariadb.sql(f"DROP DATABASE {db}")
        mariadb.sql(f"DROP USER '{reader}'@'127.0.0.1'")
        rs = await world.restore(None)
        assert rs["status"]["phase"] == "Succeeded", (rs["status"], world.logs[-1][-3000:])
    assert _fingerprint(mariadb, db) == before
    assert before["orders"].startswith(f"{ROWS}:")
    assert mariadb.sql("SELECT COUNT(*) FROM big_orders", db) == mariadb.sql(
        "SELECT COUNT(*) FROM orders WHERE amount > 100", db
    )
    assert mariadb.sql("SELECT order_total(7)", db) == mariadb.sql(
        "SELECT COALESCE(SUM(amount), 0) FROM orders WHERE customer_id = 7", db
    )
    mariadb.sql("INSERT INTO customers VALUES (0, 'zero', 'MiXeD@Case')", db)
    assert mariadb.sql("SELECT email FROM customers WHERE id = 0", db) == "mixed@case"
    # the user came back with its password and grants
    assert mariadb.login(reader, READER_PASSWORD, db, "SELECT COUNT(*) FROM blobs") == "500"
    assert argv.samples > 10 and argv.found == []
    assert mariadb.password not in await world.published() + caplog.text


async def test_wrong_password_fails_with_what_to_fix_and_leaks_nowhere(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    mariadb: MariaDBServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "Wr0ng-pa55word-" + namespace[-6:]
    await run_operator()
    world = World(rawkube, runner, namespace, restic_bin, rest_server)
    await world.setup({"username": "root", "password": wrong}, _binding(mariadb))
    with ArgvWatch(wrong) as argv:  # the MySQL catalog's Task: mysqldump and mysql
        done = await world.backup({"name": "mysql-backup-8.0"})
    assert done["status"]["phase"] == "Failed"
    (host,) = done["status"]["targets"][0]["stats"]
    assert "cannot log in to MySQL/MariaDB at 127.0.0.1" in host["error"], host
    assert "Access denied for user 'root'" in host["error"], host
    assert f"Secret {namespace}/db-auth" in host["error"], host
    assert argv.samples > 10 and argv.found == []
    published = await world.published() + caplog.text
    assert "cannot log in" in published
    assert wrong not in published
    assert world.snapshots() == []
