"""The Elasticsearch/OpenSearch engine (§9): the credentials reach elasticdump only as a
0600 auth file (never an argument), TLS material only with https, the index pattern
from the step or the URL; the stream program's sections are split where they begin and
its messages never carry the password, plain or URL-encoded."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from stash.agent.databases import private_dir
from stash.agent.esstream import Cluster, StreamError, _read_auth, load, main, section_header
from stash.agent.nosql import NOSQL_ENGINES
from stash.contract.appbinding import Credentials, Endpoint, TlsMaterial

PASSWORD = 'p:a"ss\\wo rd;#x='


def test_credentials_are_a_private_auth_file_elasticdump_and_we_read_alike(
    tmp_path: Path,
) -> None:
    es = NOSQL_ENGINES["es"]
    with private_dir(tmp_path) as work:
        conn = es.connect(Endpoint("http", "es.db", None), Credentials("elastic", PASSWORD), work)
        conn = es.with_step_options(conn, {"indices": "logs-*,books"})
        argv, env, name = es.dump_argv(conn, "", ("--limit=500",))
        assert name == "dumpfile.ndjson" and env == {}
        assert argv[1:4] == ["-m", "stash.agent.esstream", "dump"]
        assert "--url=http://es.db:9200" in argv and "--indices=logs-*,books" in argv
        assert argv[-2:] == ["--", "--limit=500"] and "--elasticdump=elasticdump" in argv
        (auth,) = [a.split("=", 1)[1] for a in argv if a.startswith("--auth-file=")]
        assert stat.S_IMODE(os.stat(auth).st_mode) == 0o600
        assert _read_auth(auth) == ("elastic", PASSWORD)
        load_argv, _ = es.load_argv(conn, "/opt/elasticdump", "/dumpfile.ndjson", ())
        assert load_argv[3] == "load" and "--elasticdump=/opt/elasticdump" in load_argv
        assert not any(a.startswith("--indices") for a in load_argv)
        assert es.tool_name(load_argv) == "elasticdump" and es.tool_name(argv) == "elasticdump"
        probe, _ = es.probe_argv(conn, "")
        assert PASSWORD not in json.dumps([argv, load_argv, probe])
    url_pattern = es.connect(Endpoint("https", "h", 9201, "logs-*"), Credentials(), tmp_path)
    assert "--indices=logs-*" in es.with_step_options(url_pattern, {}).lead


@pytest.mark.parametrize(
    ("endpoint", "creds", "tls", "said"),
    [
        (Endpoint("http", "h", None), Credentials(), TlsMaterial("CA"), "but its URL is http://"),
        (Endpoint("https", "h", None), Credentials(), TlsMaterial(cert="C"), "needs its key"),
        (Endpoint("http", "h", None), Credentials("", "pw"), TlsMaterial(), "no username"),
        (Endpoint("es", "h", None), Credentials(), TlsMaterial(), "http:// or https://"),
        (Endpoint("http", "h", None, "", (("x", "1"),)), Credentials(), TlsMaterial(), "query"),
    ],
)
def test_what_the_engine_cannot_do_is_refused_with_the_reason(
    tmp_path: Path, endpoint: Endpoint, creds: Credentials, tls: TlsMaterial, said: str
) -> None:
    with pytest.raises(ValueError, match=said):
        NOSQL_ENGINES["es"].connect(endpoint, creds, tmp_path, tls)


def test_tls_files_go_to_the_stream_program(tmp_path: Path) -> None:
    es = NOSQL_ENGINES["es"]
    with private_dir(tmp_path) as work:
        conn = es.connect(
            Endpoint("https", "h", None), Credentials(), work, TlsMaterial("CA", "CERT", "KEY")
        )
        flags = dict(a.split("=", 1) for a in conn.lead)
        assert Path(flags["--ca"]).read_text() == "CA"
        assert Path(flags["--key"]).read_text() == "KEY"
    cluster = Cluster("https://h:9200", ca="/ca", cert="/c", key="/k")
    assert cluster.tool_args("output") == [
        "--output-ca=/ca",
        "--output-cert=/c",
        "--output-key=/k",
        "--tlsAuth",
    ]


def test_probe_tells_a_refused_login_from_a_cluster_not_up() -> None:
    es = NOSQL_ENGINES["es"]
    refused = 'GET /: HTTP 401 {"error":"security_exception"}'
    assert es.refused_login(refused) and not es.retryable(refused)
    assert es.retryable("GET /: [Errno 111] Connection refused")
    assert not es.retryable("GET /: HTTP 404 nope")


def test_messages_lose_the_password_also_url_encoded(tmp_path: Path) -> None:
    auth = tmp_path / "auth.ini"
    auth.write_text(f"user={json.dumps('u')}\npassword={json.dumps(PASSWORD)}\n")
    cluster = Cluster("http://h:9200", str(auth))
    said = "at http://u:p%3Aa%22ss%5Cwo%20rd%3B%23x%3D@h:9200/x: " + PASSWORD
    assert PASSWORD not in cluster.redact(said) and "%3Aa%22ss" not in cluster.redact(said)


def test_a_stream_that_is_not_a_dump_is_refused_before_anything_is_loaded() -> None:
    cluster = Cluster("http://127.0.0.1:1", elasticdump="/nonexistent/elasticdump")
    with pytest.raises(StreamError, match="not a backup-es dump"):
        load(cluster, (), io.BytesIO(b'{"_index":"a","_id":"1"}\n'))
    with pytest.raises(StreamError, match="empty"):
        load(cluster, (), io.BytesIO(b""))
    assert json.loads(section_header("a", "data")) == {"#stash": {"index": "a", "type": "data"}}


def test_the_stream_programs_command_line_takes_elasticdump_arguments_after_dashes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, _, _ = NOSQL_ENGINES["es"].dump_argv(
        NOSQL_ENGINES["es"].connect(Endpoint("http", "127.0.0.1", 1), Credentials(), Path("/")),
        "",
        (),
    )
    assert main(argv[3:]) == 1  # nothing listens on port 1: said, not a usage error
    assert "GET /_cat/indices" in capsys.readouterr().err


def test_a_ca_alone_still_turns_on_elasticdumps_tls_options() -> None:
    # elasticdump 6 reads --input-ca / --output-ca only with --tlsAuth
    assert Cluster("https://h:9200", ca="/ca").tool_args("input") == [
        "--input-ca=/ca",
        "--tlsAuth",
    ]
    assert Cluster("http://h:9200").tool_args("input") == []
