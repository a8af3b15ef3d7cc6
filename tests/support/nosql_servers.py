"""Real NoSQL servers for the addon tests, each started once per test run on a free
loopback port in a temp directory, and the Go-built tools the agent runs against them.

`database_tools_bin()`: where `tests/tools/build-databases.sh` put ferretdb, mongodump,
mongorestore and redis-dump-go (built and cached by `make tools`; built here if missing).
`RedisServer`: Debian's redis-server 7 with a password from a 0600 config file (never an
argument), no persistence; `RespClient` is a small RESP client for the test's own reads
and writes (a database number per test).
`FerretDBServer`: FerretDB v1 (our wrapper, `tests/tools/ferretdb`) on the PostgreSQL
backend of a `PostgresServer` of its own (not the PostgreSQL tests' one, whose
pg_dumpall round trips would dump and reload FerretDB's tables), so the MongoDB logins
(PLAIN, the only mechanism FerretDB v1 knows) are really checked by PostgreSQL: role
`ferret`.
A binary that is missing raises DatabaseUnavailable with what to install.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.databases import DatabaseUnavailable, PostgresServer, built_tools
from tests.support.storage import free_port

__all__ = [
    "FerretDBServer",
    "RedisServer",
    "RespClient",
    "database_tools_bin",
]

BUILD = Path(__file__).resolve().parents[1] / "tools" / "build-databases.sh"
REDIS_PASSWORD = 'rd-Sup3r"se\\cret pw'
MONGO_PASSWORD = "mg-Sup3r:se'cret pw"


@functools.cache
def database_tools_bin() -> str:
    """The directory of ferretdb, mongodump, mongorestore and redis-dump-go."""
    return built_tools(BUILD)


class RespClient:
    """One connection speaking RESP: `call("HGETALL", "k")` -> the decoded reply."""

    def __init__(self, port: int, password: str, db: int = 0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = self.sock.makefile("rb")
        self.call("AUTH", password)
        self.call("SELECT", str(db))

    def close(self) -> None:
        """Close the connection."""
        self.buf.close()
        self.sock.close()

    def call(self, *args: str | bytes) -> Any:
        """Send one command and read its reply (an error reply raises)."""
        self.send(*args)
        return self.reply()

    def send(self, *args: str | bytes) -> None:
        """Send one command without reading its reply (pipelining)."""
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        out = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self.sock.sendall(out)

    def reply(self) -> Any:
        """Read one reply."""
        line = self.buf.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.buf.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.reply() for _ in range(size)]
        raise RuntimeError(f"unexpected RESP reply {line!r}")


class RedisServer:
    """A Redis server of our own (module docstring)."""

    name = "Redis"
    password = REDIS_PASSWORD

    def __init__(self) -> None:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                raise DatabaseUnavailable(
                    f"{tool} not found: install the Debian packages redis-server and "
                    "redis-tools (`make install` does)"
                )
        self.dir = Path(tempfile.mkdtemp(prefix="stash-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._next_db = 0

    def start(self) -> None:
        """Start with the password in a 0600 config file; wait for PONG."""
        conf = self.dir / "redis.conf"
        quoted = self.password.replace("\\", "\\\\").replace('"', '\\"')
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                f'port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nsave ""\nappendonly no\n'
                f'requirepass "{quoted}"\nlogfile {self.dir / "redis.log"}\n'
            )
        self.proc = subprocess.Popen(
            ["redis-server", str(conf)], stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                RespClient(self.port, self.password).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                    raise DatabaseUnavailable(f"redis-server did not start: {log}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server and remove its files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def new_db(self) -> int:
        """A database number no other test of the run uses (1..15)."""
        self._next_db += 1
        if self._next_db > 15:
            raise DatabaseUnavailable("more than 15 Redis tests in one run: no database left")
        return self._next_db

    def client(self, db: int) -> RespClient:
        """A connection to database `db`."""
        return RespClient(self.port, self.password, db)


class FerretDBServer:
    """FerretDB on the run's PostgreSQL (module docstring)."""

    name = "MongoDB (FerretDB)"
    user = "ferret"
    password = MONGO_PASSWORD

    def __init__(self) -> None:
        self.pg = PostgresServer()
        self.bin = Path(database_tools_bin())
        if not os.access(self.bin / "ferretdb", os.X_OK):
            raise DatabaseUnavailable(f"ferretdb not built in {self.bin} (`make tools`)")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="stash-ferretdb-", suffix=".log")[1])

    def start(self) -> None:
        """PostgreSQL with role and database `ferretdb`, then FerretDB; wait for a login
        (what was started is stopped again when that fails)."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.pg.start()
        quoted = self.password.replace("'", "''")
        self.pg.sql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{quoted}'")
        self.pg.sql(f"CREATE DATABASE ferretdb OWNER {self.user}")
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "ferretdb"),
                    f"-listen-addr=127.0.0.1:{self.port}",
                    "-handler=postgresql",
                    f"-postgresql-url=postgres://127.0.0.1:{self.pg.port}/ferretdb",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with self.client() as c:
                    c.admin.command("ping")
                return
            except Exception as exc:  # pymongo's errors: not up yet
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    raise DatabaseUnavailable(f"ferretdb did not start: {exc}\n{tail}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop FerretDB and its PostgreSQL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.pg.stop()
        self.log.unlink(missing_ok=True)

    def client(self) -> Any:
        """A pymongo client logged in as `ferret` (PLAIN)."""
        import pymongo

        return pymongo.MongoClient(
            "127.0.0.1",
            self.port,
            username=self.user,
            password=self.password,
            authMechanism="PLAIN",
            authSource="admin",
            serverSelectionTimeoutMS=5000,
        )
