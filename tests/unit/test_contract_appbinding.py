"""AppBinding resolution (§9): clientConfig url or service -> endpoint, the TARGET_APP_*
variables, the addon Task, and the env a Job's steps get (credentials only by reference)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from stash.agent.databases import ENGINES, private_dir
from stash.api import AppBinding
from stash.contract.appbinding import (
    Credentials,
    Endpoint,
    TlsMaterial,
    addon_task,
    app_variables,
    connection_env,
    credentials_from_env,
    resolve_endpoint,
    tls_from_env,
)


def _binding(spec: dict[str, object]) -> AppBinding:
    return AppBinding.model_validate(
        {"metadata": {"name": "pg", "namespace": "demo"}, "spec": spec}
    )


def test_url_gives_host_port_database_and_query() -> None:
    b = _binding({"clientConfig": {"url": "postgres://db.demo.svc:5433/shop?sslmode=require"}})
    assert resolve_endpoint(b, "demo") == Endpoint(
        "postgres", "db.demo.svc", 5433, "shop", (("sslmode", "require"),)
    )


def test_service_reference_resolves_in_the_namespace() -> None:
    b = _binding(
        {
            "clientConfig": {
                "service": {
                    "name": "pg",
                    "port": 5432,
                    "scheme": "postgresql",
                    "path": "/app",
                    "query": "sslmode=disable",
                }
            }
        }
    )
    assert resolve_endpoint(b, "demo") == Endpoint(
        "postgresql", "pg.demo.svc", 5432, "app", (("sslmode", "disable"),)
    )


def test_url_wins_over_service() -> None:
    b = _binding(
        {"clientConfig": {"url": "mysql://10.0.0.1:3306/", "service": {"name": "x", "port": 1}}}
    )
    assert resolve_endpoint(b, "demo").host == "10.0.0.1"


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({}, "no spec.clientConfig"),
        ({"url": "not a url"}, "not a URL"),
        ({"service": {"port": 5432}}, "has no name"),
        ({"url": "postgres://u:hunter2@db:5432/x"}, "carries credentials"),
    ],
)
def test_unusable_client_config_says_why(config: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says) as err:
        resolve_endpoint(_binding({"clientConfig": config}), "demo")
    assert "hunter2" not in str(err.value)


def test_target_app_variables() -> None:
    b = _binding({"type": "kubedb.com/postgres", "version": "15.4"})
    assert app_variables(b) == {
        "TARGET_APP_TYPE": "kubedb.com/postgres",
        "TARGET_APP_VERSION": "15.4",
        "TARGET_APP_GROUP": "kubedb.com",
        "TARGET_APP_RESOURCE": "postgres",
    }
    assert app_variables(_binding({})) == {}


def test_addon_task_from_parameters() -> None:
    b = _binding(
        {
            "parameters": {
                "stash": {
                    "addon": {
                        "backupTask": {
                            "name": "postgres-backup-15",
                            "params": [{"name": "args", "value": "--clean"}],
                        },
                        "restoreTask": {"name": "postgres-restore-15"},
                    }
                }
            }
        }
    )
    assert addon_task(b, "backup") == ("postgres-backup-15", {"args": "--clean"})
    assert addon_task(b, "restore") == ("postgres-restore-15", {})
    assert addon_task(_binding({"parameters": {"other": 1}}), "backup") == ("", {})


def test_connection_env_carries_secret_references_never_values() -> None:
    b = _binding(
        {"clientConfig": {"url": "postgres://db:5432/shop"}, "secret": {"name": "pg-auth"}}
    )
    env = connection_env(b, resolve_endpoint(b, "demo"))
    values = {e["name"]: e.get("value") for e in env if "value" in e}
    assert values["STASH_DB_HOST"] == "db" and values["STASH_DB_NAME"] == "shop"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["STASH_DB_PASSWORD"] == {"name": "pg-auth", "key": "password", "optional": True}
    assert refs["STASH_DB_LEGACY_PASSWORD"]["key"] == "POSTGRES_PASSWORD"


def test_agent_reads_credentials_and_a_dsn_fills_gaps() -> None:
    endpoint, creds = credentials_from_env(
        {
            "STASH_DB_HOST": "db",
            "STASH_DB_PORT": "5432",
            "STASH_DB_LEGACY_USER": "postgres",
            "STASH_DB_URL": "postgres://ignored:s3cret@other:1/shop",
        }
    )
    assert (endpoint.host, endpoint.port, endpoint.database) == ("db", 5432, "shop")
    assert creds == Credentials("postgres", "s3cret")
    assert "s3cret" not in repr(creds)


def test_credential_files_are_private_and_the_password_is_in_no_argv(tmp_path: Path) -> None:
    creds = Credentials("app", 'p:a"ss\\word')
    endpoint = Endpoint("postgres", "127.0.0.1", 5555, "shop")
    with private_dir(tmp_path) as work:
        assert stat.S_IMODE(os.stat(work).st_mode) == 0o700
        for engine in ENGINES.values():
            conn = engine.connect(endpoint, creds, work)
            argv, env, name = engine.dump_argv(conn, "", ())
            load, _ = engine.load_argv(conn, "", f"/{name}", ())
            assert creds.password not in json.dumps([argv, env, load, conn.env])
        files = list(work.iterdir())
        assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
        assert 'p\\:a"ss\\\\word' in (work / "pgpass").read_text()
    assert not work.exists()


def test_dump_commands(tmp_path: Path) -> None:
    pg, my = ENGINES["pg"], ENGINES["mysql"]
    conn = pg.connect(Endpoint("postgres", "h", None, "shop"), Credentials(), Path("/nonexistent"))
    assert pg.dump_argv(conn, "", ("--clean",)) == (["pg_dumpall", "--clean"], {}, "dumpfile.sql")
    assert pg.dump_argv(conn, "pg_dump", ()) == (
        ["pg_dump", "--format=custom"],
        {"PGDATABASE": "shop"},
        "dumpfile.dump",
    )
    assert pg.load_argv(conn, "", "/dumpfile.dump", ())[0][:2] == ["pg_restore", "--create"]
    assert conn.env["PGPORT"] == "5432"
    no_db = pg.connect(Endpoint("postgres", "h", 1), Credentials(), Path("/nonexistent"))
    with pytest.raises(ValueError, match="one database"):
        pg.dump_argv(no_db, "pg_dump", ())
    assert pg.retryable("psql: error: connection to server failed: Connection refused")
    assert not pg.retryable('FATAL:  password authentication failed for user "postgres"')
    assert my.retryable("ERROR 2003 (HY000): Can't connect to MySQL server on '127.0.0.1'")
    assert not my.retryable("ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1'")
    my_conn = my.connect(Endpoint("mysql", "h", None), Credentials(), tmp_path)
    assert my.dump_argv(my_conn, "", ("--compact",))[0][-2:] == ["--compact", "--all-databases"]
    assert my.dump_argv(my_conn, "", ("--databases", "shop"))[0][-2:] == ["--databases", "shop"]
    assert my.refused_login("ERROR 1045 (28000): Access denied for user 'root'@'127.0.0.1'")
    assert not pg.refused_login('FATAL:  database "shop" does not exist')
    assert pg.probe_argv(conn, "", restoring=True)[1]["PGDATABASE"] == "postgres"
    assert pg.probe_argv(conn, "")[1]["PGDATABASE"] == "shop"


def test_tls_material_reaches_the_tools_as_private_files(tmp_path: Path) -> None:
    b = _binding(
        {
            "clientConfig": {"url": "postgres://db:5432/"},
            "tlsSecret": {"name": "db-tls"},
        }
    )
    env = connection_env(b, resolve_endpoint(b, "demo"))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["STASH_DB_TLS_CA"] == {"name": "db-tls", "key": "ca.crt", "optional": True}
    tls = tls_from_env({"STASH_DB_TLS_CA": "CA PEM", "STASH_DB_TLS_KEY": "KEY PEM"})
    assert tls == TlsMaterial("CA PEM", "", "KEY PEM") and "KEY PEM" not in repr(tls)
    bundle = base64.b64encode(b"BUNDLE PEM").decode()
    assert tls_from_env({"STASH_DB_CA_BUNDLE": bundle}).ca == "BUNDLE PEM"
    endpoint = Endpoint("postgres", "db", 5432)
    with private_dir(tmp_path) as work:
        pg = ENGINES["pg"].connect(endpoint, Credentials("u", "p"), work, tls)
        assert pg.env["PGSSLMODE"] == "verify-full"
        assert Path(pg.env["PGSSLROOTCERT"]).read_text() == "CA PEM"
        assert stat.S_IMODE(os.stat(pg.env["PGSSLKEY"]).st_mode) == 0o600
        asked = ENGINES["pg"].connect(
            Endpoint("postgres", "db", 5432, "", (("sslmode", "verify-ca"),)),
            Credentials(),
            work,
            tls,
        )
        assert asked.env["PGSSLMODE"] == "verify-ca"
        ENGINES["mysql"].connect(endpoint, Credentials(), work, tls)
        cnf = (work / "my.cnf").read_text()
        assert "ssl-verify-server-cert" in cnf and "ssl-ca=" in cnf
