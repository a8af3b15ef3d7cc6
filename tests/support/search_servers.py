"""A real OpenSearch for the Elasticsearch addon tests, started once per test run on free
loopback ports in a temp directory, behind a small proxy that checks a password.

`elasticsearch_tools()`: where `tests/tools/build-elasticsearch.sh` put OpenSearch (the
integ-test-zip distribution from Maven Central) and npm elasticdump (cached by `make
tools`; fetched here if missing).
`OpenSearchServer`: `bin/opensearch` of a hard-linked copy of the cached distribution
(its own config/, so the keystore and jvm.options are per run) as the user `nobody`
(OpenSearch refuses root), single node, heap 512 MB, C1 JIT only (starts faster). The
distribution has no security plugin, so the tests reach it through `BasicAuthProxy`:
every request needs HTTP Basic auth as `elastic` with `PASSWORD`, else 401 with an
OpenSearch-like body; the login path of the agent is thus really checked. A second
proxy serves HTTPS (`tls_url`) with a certificate for 127.0.0.1 from a test CA
(`ca_pem`). `request()` talks to OpenSearch directly.
A missing tool raises DatabaseUnavailable with what to install.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import http.client
import http.server
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from stash.pki import issue_ca, issue_serving_cert
from tests.support.databases import DatabaseUnavailable, built_tools
from tests.support.storage import free_port

__all__ = ["BasicAuthProxy", "OpenSearchServer", "elasticsearch_tools"]

BUILD = Path(__file__).resolve().parents[1] / "tools" / "build-elasticsearch.sh"
USER = "elastic"
PASSWORD = 'es-Sup3r:se\'cret "pw" #;='
HEAP = "512m"


@functools.cache
def elasticsearch_tools() -> Path:
    """The cache directory with `opensearch/` and `elasticdump/`."""
    return Path(built_tools(BUILD))


class BasicAuthProxy:
    """An HTTP proxy to `upstream` that wants `user`/`password` (module docstring)."""

    def __init__(
        self, upstream: int, user: str, password: str, tls: ssl.SSLContext | None = None
    ) -> None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        expected = f"Basic {token}"

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else None
                if self.headers.get("Authorization") != expected:
                    self._answer(
                        401,
                        b'{"error":{"type":"security_exception",'
                        b'"reason":"unable to authenticate user"},"status":401}',
                    )
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                self._answer(answer.status, answer.read(), answer.getheader("Content-Type"))
                conn.close()

            def _answer(self, status: int, data: bytes, kind: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class OpenSearchServer:
    """OpenSearch behind a password-checking proxy (module docstring)."""

    name = "OpenSearch"
    user = USER
    password = PASSWORD

    def __init__(self) -> None:
        if shutil.which("java") is None:
            raise DatabaseUnavailable("java not found: install a JDK 17 (Debian openjdk-17)")
        self.tools = elasticsearch_tools()
        self.elasticdump_bin = self.tools / "elasticdump" / "node_modules" / ".bin"
        self.dir = Path(tempfile.mkdtemp(prefix="stash-opensearch-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.proxy: BasicAuthProxy | None = None
        self.tls_proxy: BasicAuthProxy | None = None
        self.ca_pem = ""
        self._next = 0

    def _lay_out(self) -> Path:
        """A hard-linked copy of the distribution with its own config, data, logs, tmp."""
        home = self.dir / "opensearch"
        source = self.tools / "opensearch"
        try:
            shutil.copytree(source, home, copy_function=os.link, ignore=_only_code)
        except OSError:
            shutil.copytree(source, home, ignore=_only_code)
        shutil.copytree(source / "config", home / "config")
        options = home / "config" / "jvm.options"
        text = options.read_text().replace("-Xms1g", f"-Xms{HEAP}").replace("-Xmx1g", f"-Xmx{HEAP}")
        text = text.replace("=logs/", f"={self.dir}/logs/")
        text = text.replace("HeapDumpPath=data", f"HeapDumpPath={self.dir}/data")
        # C1 only: the node starts in half the time (measured 21-27 s against 43-50 s on
        # a loaded 2-core machine), and the tests' few thousand documents need no C2.
        options.write_text(text + "\n-XX:TieredStopAtLevel=1\n")
        for sub in ("data", "logs", "tmp"):
            (self.dir / sub).mkdir()
        if os.getuid() == 0:
            os.chmod(self.dir, 0o755)
            for path in (self.dir, self.dir / "data", self.dir / "logs", self.dir / "tmp"):
                shutil.chown(path, "nobody", "nogroup")
            for root, _, files in os.walk(home / "config"):
                shutil.chown(root, "nobody", "nogroup")
                for f in files:
                    shutil.chown(Path(root) / f, "nobody", "nogroup")
        return home

    def start(self) -> None:
        """Start OpenSearch and the proxy; wait for a yellow cluster (what was started is
        stopped again when that fails)."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        home = self._lay_out()
        argv = [
            str(home / "bin" / "opensearch"),
            "-Ediscovery.type=single-node",
            "-Enetwork.host=127.0.0.1",
            f"-Ehttp.port={self.port}",
            f"-Etransport.port={free_port()}",
            f"-Epath.data={self.dir / 'data'}",
            f"-Epath.logs={self.dir / 'logs'}",
            "-Ecluster.routing.allocation.disk.threshold_enabled=false",
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OPENSEARCH_TMPDIR": str(self.dir / "tmp"),
            "JAVA_HOME": os.environ.get("JAVA_HOME") or _java_home(),
        }
        if os.getuid() == 0:
            argv = ["runuser", "-u", "nobody", "--", *argv]
        with (self.dir / "console.log").open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while True:
            try:
                self.request("GET", "/_cluster/health?wait_for_status=yellow&timeout=1s")
                break
            except (OSError, urllib.error.URLError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.dir / "console.log").read_text(errors="replace")[-3000:]
                    raise DatabaseUnavailable(f"opensearch did not start: {tail}") from None
                time.sleep(0.5)
        self.proxy = BasicAuthProxy(self.port, self.user, self.password)
        self.tls_proxy = BasicAuthProxy(self.port, self.user, self.password, self._tls())

    def _tls(self) -> ssl.SSLContext:
        now = dt.datetime.now(dt.UTC)
        ca = issue_ca("stash-test-opensearch-ca", now, dt.timedelta(days=2))
        served = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"], now, dt.timedelta(days=2))
        self.ca_pem = ca.cert_pem.decode()
        for name, pem in (("proxy.crt", served.cert_pem), ("proxy.key", served.key_pem)):
            (self.dir / name).write_bytes(pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.dir / "proxy.crt", self.dir / "proxy.key")
        return context

    def stop(self) -> None:
        """Stop OpenSearch and the proxy; remove the files."""
        for proxy in (self.proxy, self.tls_proxy):
            if proxy is not None:
                proxy.stop()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def url(self) -> str:
        """The URL the agent uses (the proxy's)."""
        assert self.proxy is not None
        return f"http://127.0.0.1:{self.proxy.port}"

    @property
    def tls_url(self) -> str:
        """The URL of the HTTPS proxy."""
        assert self.tls_proxy is not None
        return f"https://127.0.0.1:{self.tls_proxy.port}"

    def new_prefix(self) -> str:
        """An index name prefix no other test of the run uses."""
        self._next += 1
        return f"t{self._next}-"

    def request(self, method: str, path: str, body: Any = None, ndjson: str = "") -> Any:
        """One request straight to OpenSearch; the decoded answer (an error raises)."""
        data = ndjson.encode() if ndjson else None if body is None else json.dumps(body).encode()
        kind = "application/x-ndjson" if ndjson else "application/json"
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": kind},
        )
        with urllib.request.urlopen(req, timeout=60) as answer:
            return json.loads(answer.read() or b"null")


def _only_code(directory: str, names: list[str]) -> list[str]:
    """copytree's ignore: everything but bin/, lib/, modules/ and plugins/ at the top."""
    if Path(directory).name == "opensearch" and "lib" in names:
        return [n for n in names if n not in ("bin", "lib", "modules", "plugins")]
    return []


def _java_home() -> str:
    java = Path(shutil.which("java") or "/usr/bin/java").resolve()
    return str(java.parents[1])
