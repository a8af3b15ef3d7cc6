"""The database engines of the addon steps (stash-api.md §9): how to log in, dump, load
and wait for PostgreSQL and MySQL/MariaDB with their own command-line tools.

What it is for: `ENGINES["pg"|"mysql"]` turn an `Endpoint`, `Credentials` and the step's
flags into argument lists and environments:

* credentials go into a file readable only by us (`0600`, in a private directory under
  the scratch dir, removed afterwards): libpq's `PGPASSFILE`, a MySQL option file passed
  as `--defaults-file` (which also keeps `/etc/mysql` out). A password is never in an
  argument list, an environment variable of a child or a message.
* `dump_argv()`: PostgreSQL `pg_dumpall` (default; plain SQL, roles and grants included,
  stored as `dumpfile.sql`) or `pg_dump` of the AppBinding's database in custom format
  (`dumpfile.dump`); MySQL/MariaDB `mysqldump` / `mariadb-dump` with
  `--single-transaction --routines --triggers --events --flush-privileges`, and
  `--all-databases` unless `args` selects what to dump (`--databases`, a name, ...).
* `load_argv()`: `psql` (into the maintenance database `postgres`: a pg_dumpall
  script connects to each database itself) for `.sql`, `pg_restore --create` for
  `.dump`; `mysql`/`mariadb`.
* TLS: the AppBinding's CA (`tlsSecret` `ca.crt` or `clientConfig.caBundle`), client
  certificate and key are written to 0600 files too; a CA given means the server is
  verified (libpq `sslmode=verify-full`, MySQL `ssl-verify-server-cert`) unless the
  client config's query says otherwise (`sslmode=...`).
* `probe_argv()` + `retryable()`: a `SELECT 1` that tells "not up yet" (retry until
  `waitTimeout`) from "refused to log in" (fail at once).

Not for: running them or recording results (`stash.agent.dbsteps`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stash.contract.appbinding import Credentials, Endpoint, TlsMaterial

__all__ = [
    "DUMP_FILES",
    "ENGINES",
    "Connection",
    "Engine",
    "private_dir",
    "tls_files",
    "write_private",
]

#: What a database step stores: SQL scripts, pg_dump archives, Redis RESP, mongodump
#: archives, the Elasticsearch/OpenSearch stream (`esstream`).
DUMP_FILES = (
    "/dumpfile.sql",
    "/dumpfile.dump",
    "/dumpfile.resp",
    "/dumpfile.archive",
    "/dumpfile.ndjson",
)
#: Endpoint query keys libpq also reads from the environment.
_PG_QUERY_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
}
_PG_RETRY = re.compile(
    r"could not connect|Connection refused|starting up|shutting down|timeout expired|"
    r"No such file or directory|could not translate host name|in recovery mode",
    re.IGNORECASE,
)
_LOGIN_REFUSED = re.compile(
    r"password authentication failed|authentication failed|no password supplied|"
    r"ERROR 1045|Access denied for user|ERROR 1698",
    re.IGNORECASE,
)
_MYSQL_SELECTION = frozenset({"--all-databases", "-A", "--databases", "-B"})
_MYSQL_RETRY = re.compile(r"ERROR 200[23]|ERROR 2013|ERROR 2005|Can't connect", re.IGNORECASE)


@dataclass(frozen=True, repr=False)
class Connection:
    """How every tool of one step reaches the database: env and leading arguments."""

    env: dict[str, str] = field(default_factory=dict)
    lead: tuple[str, ...] = ()
    where: str = ""
    username: str = ""
    database: str = ""


@contextlib.contextmanager
def private_dir(scratch: Path) -> Iterator[Path]:
    """A directory only we can read (0700) for credential files, removed afterwards."""
    scratch.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".db-", dir=scratch))
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_private(path: Path, text: str) -> None:
    """Write `text` into a new file only we can read (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _pg_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _cnf_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def tls_files(tls: TlsMaterial, workdir: Path) -> dict[str, str]:
    """Write the PEM texts given into 0600 files; {"ca"|"cert"|"key": path}."""
    out: dict[str, str] = {}
    for name, text in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)):
        if text:
            path = workdir / f"tls-{name}.pem"
            write_private(path, text)
            out[name] = str(path)
    return out


@dataclass(frozen=True)
class Engine:
    """One database family and its tools."""

    key: str
    title: str
    dump_tool: str
    load_tool: str
    default_port: int

    def connect(
        self,
        endpoint: Endpoint,
        creds: Credentials,
        workdir: Path,
        tls: TlsMaterial | None = None,
    ) -> Connection:
        """Write the credential (and TLS) files into `workdir`; say how tools use them."""
        host = endpoint.host or "127.0.0.1"
        port = endpoint.port or self.default_port
        where = f"{self.title} at {host}:{port}"
        files = tls_files(tls or TlsMaterial(), workdir)
        if self.key == "pg":
            env = {"PGHOST": host, "PGPORT": str(port)}
            if creds.username:
                env["PGUSER"] = creds.username
            if creds.password:
                passfile = workdir / "pgpass"
                write_private(passfile, f"*:*:*:*:{_pg_escape(creds.password)}\n")
                env["PGPASSFILE"] = str(passfile)
            for name, var in (("ca", "PGSSLROOTCERT"), ("cert", "PGSSLCERT"), ("key", "PGSSLKEY")):
                if name in files:
                    env[var] = files[name]
            if "ca" in files:
                env["PGSSLMODE"] = "verify-full"  # a CA given is a CA to check against
            for key, value in endpoint.query:
                if key in _PG_QUERY_ENV:
                    env[_PG_QUERY_ENV[key]] = value
            return Connection(env, (), where, creds.username, endpoint.database)
        lines = ["[client]", f"host={host}", f"port={port}", "protocol=TCP"]
        if creds.username:
            lines.append(f"user={_cnf_quote(creds.username)}")
        if creds.password:
            lines.append(f"password={_cnf_quote(creds.password)}")
        for name, option in (("ca", "ssl-ca"), ("cert", "ssl-cert"), ("key", "ssl-key")):
            if name in files:
                lines.append(f"{option}={_cnf_quote(files[name])}")
        if "ca" in files:
            lines.append("ssl-verify-server-cert")
        for key, value in endpoint.query:
            if key.startswith("ssl"):
                lines.append(f"{key.replace('_', '-')}={_cnf_quote(value)}")
        option_file = workdir / "my.cnf"
        write_private(option_file, "\n".join(lines) + "\n")
        lead = (f"--defaults-file={option_file}",)
        return Connection({}, lead, where, creds.username, endpoint.database)

    def dump_argv(
        self, conn: Connection, tool: str, args: Sequence[str]
    ) -> tuple[list[str], dict[str, str], str]:
        """(argv, extra env, stored file name) of the dump; ValueError when impossible."""
        tool = tool or self.dump_tool
        if self.key == "pg":
            if Path(tool).name == "pg_dump":
                if not conn.database and not any(a.startswith(("-d", "--dbname")) for a in args):
                    raise ValueError(
                        "pg_dump dumps one database: name it in the AppBinding's "
                        "clientConfig (url path or service.path) or pass --dbname in args"
                    )
                env = {"PGDATABASE": conn.database} if conn.database else {}
                return [tool, "--format=custom", *args], env, "dumpfile.dump"
            return [tool, *args], {}, "dumpfile.sql"
        fixed = ["--single-transaction", "--routines", "--triggers", "--events"]
        fixed.append("--flush-privileges")
        selects = any(a in _MYSQL_SELECTION or not a.startswith("-") for a in args)
        chosen = [*args] if selects else [*args, "--all-databases"]
        return [tool, *conn.lead, *fixed, *chosen], {}, "dumpfile.sql"

    def load_argv(
        self, conn: Connection, tool: str, path: str, args: Sequence[str]
    ) -> tuple[list[str], dict[str, str]]:
        """(argv, extra env) of the tool that loads the dump stored as `path`."""
        if self.key == "pg":
            if path.endswith(".dump"):
                tool = tool or "pg_restore"
                return [tool, "--create", "--dbname=postgres", *args], {}
            return [tool or self.load_tool, "--no-psqlrc", *args], {"PGDATABASE": "postgres"}
        return [tool or self.load_tool, *conn.lead, *args], {}

    def probe_argv(
        self, conn: Connection, tool: str, *, restoring: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        """A `SELECT 1` through the load tool (logs in like the real work will); before
        a restore PostgreSQL's maintenance database (the AppBinding's may not exist yet)."""
        if self.key == "pg":
            database = "postgres" if restoring else (conn.database or "postgres")
            env = {"PGDATABASE": database, "PGCONNECT_TIMEOUT": "5"}
            return [tool or self.load_tool, "--no-psqlrc", "-tAc", "SELECT 1"], env
        return [tool or self.load_tool, *conn.lead, "--connect-timeout=5", "-e", "SELECT 1"], {}

    def with_step_options(self, conn: Connection, options: dict[str, str]) -> Connection:
        """`conn` with the step's engine options (`authMechanism`, ...); none here."""
        return conn

    def tool_name(self, argv: Sequence[str]) -> str:
        """The tool a dump or load command line runs, as messages name it."""
        return argv[0]

    def probe_failure(self, code: int, stdout: str, stderr: str) -> str | None:
        """None when the probe answered, else what it said (to classify and report)."""
        return None if code == 0 else stderr.strip() or f"exit {code}"

    def retryable(self, stderr: str) -> bool:
        """Whether a failed probe means "not reachable yet" (else: will never work)."""
        pattern = _PG_RETRY if self.key == "pg" else _MYSQL_RETRY
        return bool(pattern.search(stderr)) and not self.refused_login(stderr)

    def refused_login(self, stderr: str) -> bool:
        """Whether a failure is the server refusing the credentials."""
        return bool(_LOGIN_REFUSED.search(stderr))


ENGINES: dict[str, Engine] = {
    "pg": Engine("pg", "PostgreSQL", "pg_dumpall", "psql", 5432),
    "mysql": Engine("mysql", "MySQL/MariaDB", "mysqldump", "mysql", 3306),
}
