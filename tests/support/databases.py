"""Real database servers for the addon tests: PostgreSQL 15 and MariaDB 10.11 from Debian
(`make install` installs them; their daemons are never started by the packages), each
started once per test run on a free loopback port in a temp directory.

`PostgresServer`: initdb through `runuser -u postgres` (initdb refuses root), local socket
trust for the test's own SQL, scram passwords over TCP (what the backup Job uses), TLS
on (a test CA, `ca_pem`; only role `tls_only` must use it).
`MariaDBServer`: `mariadb-install-db` + `mariadbd --no-defaults` as root; root@localhost
(socket, the test's SQL) has no password, root@127.0.0.1 (TCP, the Job) has one.
A binary that is missing raises DatabaseUnavailable with what to install.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from stash.pki import issue_ca, issue_serving_cert
from tests.support.storage import free_port

__all__ = ["DatabaseUnavailable", "MariaDBServer", "PostgresServer"]

PG_PASSWORD = "pg-Sup3r:se\\cret'pw"
MARIADB_PASSWORD = 'my-Sup3r"se\\cret pw'


class DatabaseUnavailable(RuntimeError):
    """A database server could not be started (missing package, failed start)."""


def built_tools(script: Path) -> str:
    """Run a cached tools build script (tests/tools/build-*.sh); the directory it prints
    last. A failed build is DatabaseUnavailable with the end of what it wrote."""
    try:
        out = subprocess.run(
            [str(script)], capture_output=True, text=True, check=True, timeout=1800
        ).stdout
    except subprocess.CalledProcessError as exc:
        raise DatabaseUnavailable(f"{script} failed: {exc.stderr.strip()[-2000:]}") from None
    return out.strip().splitlines()[-1]


def _run(argv: list[str], timeout: float = 120, **kw: object) -> str:
    """Run a client or admin tool; its stdout. A tool that hangs is an error saying which
    statement, not a test run that waits forever."""
    try:
        done = subprocess.run(  # type: ignore[call-overload]
            argv, capture_output=True, text=True, check=False, timeout=timeout, **kw
        )
    except subprocess.TimeoutExpired:
        raise DatabaseUnavailable(f"{' '.join(argv)[-300:]} did not finish in {timeout}s") from None
    if done.returncode != 0:
        raise DatabaseUnavailable(
            f"{' '.join(argv[:3])}... exited {done.returncode}: {done.stderr}"
        )
    return str(done.stdout)


class PostgresServer:
    """A PostgreSQL cluster of our own (module docstring)."""

    name = "PostgreSQL"
    user = "postgres"
    password = PG_PASSWORD

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise DatabaseUnavailable(
                "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
                "install the Debian package postgresql-15 (`make install` does)"
            )
        self.bin = Path(found[-1]).parent
        if shutil.which("runuser") is None:
            raise DatabaseUnavailable("runuser (util-linux) is needed to run initdb as postgres")
        self.dir = Path(tempfile.mkdtemp(prefix="stash-pg-"))
        self.port = free_port()
        self.started = False
        self.ca_pem = ""

    def start(self) -> None:
        """initdb, start, and set the postgres password (for TCP logins)."""
        shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        as_pg = ["runuser", "-u", "postgres", "--"]
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        _run(
            [
                *as_pg,
                str(self.bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        self._tls(data)
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off -c ssl=on "
            f"-c ssl_cert_file={self.dir / 'server.crt'} -c ssl_key_file={self.dir / 'server.key'}"
        )
        _run(
            [
                *as_pg,
                str(self.bin / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(self.dir / "pg.log"),
                "-w",
                "-o",
                opts,
                "start",
            ]
        )
        self.started = True

    def _tls(self, data: Path) -> None:
        """A CA and a server certificate for 127.0.0.1 (TLS is optional for clients, but
        role `tls_only` may log in over TCP only with TLS: `hostnossl ... reject`)."""
        now = dt.datetime.now(dt.UTC)
        ca = issue_ca("stash-test-postgres-ca", now, dt.timedelta(days=2))
        server = issue_serving_cert(ca, ["localhost"], ["127.0.0.1"], now, dt.timedelta(days=2))
        self.ca_pem = ca.cert_pem.decode()
        for name, pem in (("server.crt", server.cert_pem), ("server.key", server.key_pem)):
            path = self.dir / name
            path.write_bytes(pem)
            shutil.chown(path, "postgres", "postgres")
            os.chmod(path, 0o600)
        hba = data / "pg_hba.conf"
        hba.write_text("hostnossl all tls_only 127.0.0.1/32 reject\n" + hba.read_text())

    def stop(self) -> None:
        """Stop the server and remove its files."""
        if self.started:
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.dir / "data"),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, query: str, db: str = "postgres") -> str:
        """Run `query` as postgres over the local socket; psql's unaligned output."""
        return _run(
            [
                "psql",
                "--no-psqlrc",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-tA",
                "-c",
                query,
            ],
        ).strip()

    def login(self, user: str, password: str, db: str, query: str) -> str:
        """`query` as `user` over TCP with a password (from the env, not argv)."""
        env = {**os.environ, "PGPASSWORD": password}
        return _run(
            [
                "psql",
                "--no-psqlrc",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                db,
                "-tA",
                "-c",
                query,
            ],
            env=env,
        ).strip()


class MariaDBServer:
    """A MariaDB server of our own (module docstring)."""

    name = "MariaDB"
    user = "root"
    password = MARIADB_PASSWORD

    def __init__(self) -> None:
        for tool in ("mariadb-install-db", "mariadbd", "mariadb", "mariadb-dump"):
            if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
                raise DatabaseUnavailable(
                    f"{tool} not found: install the Debian packages mariadb-server and "
                    "mariadb-client (`make install` does)"
                )
        self.dir = Path(tempfile.mkdtemp(prefix="stash-mariadb-"))
        self.port = free_port()
        self.sock = self.dir / "s.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """install-db, start, wait until it answers, set root@127.0.0.1's password."""
        data = self.dir / "data"
        _run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]
        )
        mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        log = (self.dir / "err.log").open("wb")
        self.proc = subprocess.Popen(
            [
                mariadbd,
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                f"--socket={self.sock}",
                f"--pid-file={self.dir / 'm.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                f"--log-error={self.dir / 'err.log'}",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=64M",
                "--skip-log-bin",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            ping = subprocess.run(
                ["mariadb-admin", "--no-defaults", "-S", str(self.sock), "-uroot", "ping"],
                capture_output=True,
                check=False,
            )
            if ping.returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / "err.log").read_text(errors="replace")[-2000:]
                raise DatabaseUnavailable(f"mariadbd did not start: {tail}")
            time.sleep(0.2)
        quoted = self.password.replace("\\", "\\\\").replace("'", "\\'")
        self.sql(f"ALTER USER root@'127.0.0.1' IDENTIFIED BY '{quoted}'")

    def stop(self) -> None:
        """Stop the server and remove its files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, query: str, db: str = "") -> str:
        """Run `query` as root over the socket (no password); tab-separated rows."""
        argv = ["mariadb", "--no-defaults", "-S", str(self.sock), "-uroot", "-N", "-B"]
        return _run([*argv, *([db] if db else []), "-e", query]).strip()

    def login(self, user: str, password: str, db: str, query: str) -> str:
        """`query` as `user` over TCP with a password (MYSQL_PWD, not argv)."""
        env = {**os.environ, "MYSQL_PWD": password}
        argv = [
            "mariadb",
            "--no-defaults",
            "-h127.0.0.1",
            f"-P{self.port}",
            f"-u{user}",
            "-N",
            "-B",
        ]
        return _run([*argv, db, "-e", query], env=env).strip()
