"""The Redis and MongoDB engines' command lines (§9): the password reaches the tools only
as a 0600 file (mongo-tools' --config) or the variable the tool reads (Redis), never an
argument; the AppBinding's database, auth mechanism and parallelism become flags."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from stash.agent.databases import private_dir
from stash.agent.nosql import NOSQL_ENGINES
from stash.contract.appbinding import Credentials, Endpoint, TlsMaterial

PASSWORD = 'p:a"ss\\wo rd'


def test_redis_dumps_the_bindings_database_with_the_password_in_the_tools_variables(
    tmp_path: Path,
) -> None:
    redis = NOSQL_ENGINES["redis"]
    conn = redis.connect(
        Endpoint("redis", "10.0.0.9", 6380, "3"), Credentials("app", PASSWORD), tmp_path
    )
    argv, env, name = redis.dump_argv(conn, "", ())
    assert name == "dumpfile.resp"
    assert argv[0] == "redis-dump-go" and "-ttl=true" in argv
    assert argv[argv.index("-host") + 1] == "10.0.0.9" and argv[argv.index("-port") + 1] == "6380"
    assert argv[argv.index("-db") + 1] == "3" and argv[argv.index("-user") + 1] == "app"
    load, _ = redis.load_argv(conn, "", "/dumpfile.resp", ())
    assert load[:5] == ["redis-cli", "-h", "10.0.0.9", "-p", "6380"] and "--pipe" in load
    assert conn.env == {"REDISCLI_AUTH": PASSWORD, "REDISDUMPGO_AUTH": PASSWORD}
    assert PASSWORD not in json.dumps([argv, load, env])
    every_db = redis.connect(Endpoint("redis", "h", None), Credentials(), tmp_path)
    assert "-db" not in redis.dump_argv(every_db, "", ())[0] and every_db.env == {}
    named = redis.connect(Endpoint("redis", "h", None, "cache"), Credentials(), tmp_path)
    with pytest.raises(ValueError, match="is a number"):
        redis.dump_argv(named, "", ())


def test_redis_probe_wants_pong_and_tells_a_refused_login_from_a_server_not_up() -> None:
    redis = NOSQL_ENGINES["redis"]
    assert redis.probe_failure(0, "PONG\n", "") is None
    said = redis.probe_failure(0, "NOAUTH Authentication required.", "AUTH failed: WRONGPASS")
    assert said is not None and redis.refused_login(said) and not redis.retryable(said)
    refused = "Could not connect to Redis at 127.0.0.1:1: Connection refused"
    assert redis.retryable(redis.probe_failure(1, "", refused) or "")


def test_redis_tls_files_go_to_both_tools(tmp_path: Path) -> None:
    redis = NOSQL_ENGINES["redis"]
    with private_dir(tmp_path) as work:
        conn = redis.connect(
            Endpoint("rediss", "h", 6379), Credentials(), work, TlsMaterial("CA PEM")
        )
        argv, _, _ = redis.dump_argv(conn, "", ())
        assert "--tls" in conn.lead and "-tls" in argv
        assert Path(argv[argv.index("-cacert") + 1]).read_text() == "CA PEM"


def test_mongo_password_is_a_private_config_file_and_options_become_flags(
    tmp_path: Path,
) -> None:
    mongo = NOSQL_ENGINES["mongo"]
    endpoint = Endpoint("mongodb", "h", None, "shop", (("authSource", "users"),))
    with private_dir(tmp_path) as work:
        conn = mongo.connect(endpoint, Credentials("app", PASSWORD), work)
        conn = mongo.with_step_options(
            conn, {"authMechanism": "PLAIN", "numParallelCollections": "1"}
        )
        argv, env, name = mongo.dump_argv(conn, "", ())
        assert name == "dumpfile.archive" and env == {}
        assert argv[0] == "mongodump" and "--archive" in argv and "--db=shop" in argv
        for flag in (
            "--host=h",
            "--port=27017",
            "--username=app",
            "--authenticationDatabase=users",
            "--authenticationMechanism=PLAIN",
            "--numParallelCollections=1",
        ):
            assert flag in argv, flag
        config = Path(next(a for a in argv if a.startswith("--config="))[len("--config=") :])
        assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
        assert json.loads(config.read_text().split(": ", 1)[1]) == PASSWORD
        load, _ = mongo.load_argv(conn, "", "/dumpfile.archive", ("--drop",))
        assert load[0] == "mongorestore" and load[-2:] == ["--archive", "--drop"]
        assert "--numInsertionWorkersPerCollection=1" in load
        probe, _ = mongo.probe_argv(conn, "mongorestore")
        assert probe[0] == "mongodump" and "--archive=/dev/null" in probe
        assert PASSWORD not in json.dumps([argv, load, probe])
    selected = mongo.dump_argv(conn, "", ("--db=other",))[0]
    assert "--db=shop" not in selected and selected[-1] == "--db=other"
    with pytest.raises(ValueError, match="positive"):
        mongo.with_step_options(conn, {"numParallelCollections": "0"})


def test_mongo_tells_a_refused_login_from_a_server_not_up() -> None:
    mongo = NOSQL_ENGINES["mongo"]
    refused = (
        "Failed: can't create session: failed to connect to mongodb://h:1/: "
        "connection() error occurred during connection handshake: auth error: "
        "sasl conversation error: unable to authenticate using mechanism "
        '"SCRAM-SHA-256": (AuthenticationFailed) Authentication failed.'
    )
    assert mongo.refused_login(refused) and not mongo.retryable(refused)
    down = "Failed: can't create session: server selection error: connection refused"
    assert mongo.retryable(down)
