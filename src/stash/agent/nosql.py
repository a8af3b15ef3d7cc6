"""The NoSQL engines of the addon steps (stash-api.md §9): Redis and MongoDB, with the
same `Engine` interface as PostgreSQL and MySQL (`stash.agent.databases`).

What it is for: `NOSQL_ENGINES["redis"|"mongo"|"es"]` (Elasticsearch/OpenSearch:
`stash.agent.elasticsearch`).

* **Redis:** the dump is `redis-dump-go` (RESP commands: every key of every database,
  or of the AppBinding's database number, `redis://host:6379/3`, with `SELECT` and
  `EXPIREAT` so a key keeps the moment it expires), stored as `dumpfile.resp`; the
  load is `redis-cli --pipe`. The password reaches the tools only as the variables they
  read (`REDISDUMPGO_AUTH`, `REDISCLI_AUTH`) in their own environment; a username (ACL)
  is an argument. The probe is `redis-cli PING`, which must answer `PONG` (redis-cli
  exits 0 on a refused login).
* **MongoDB:** the dump is `mongodump --archive` (one stream, stored as
  `dumpfile.archive`; the AppBinding's database only when its URL names one), the load
  `mongorestore --archive` from stdin. The password is in a 0600 YAML file given as
  `--config` (never an argument or a variable); the authentication database is the
  URL's `authSource` (default `admin`), the mechanism the step's `authMechanism` (or the
  URL's; FerretDB v1 accepts only `PLAIN`, MongoDB `SCRAM-SHA-256`/`SCRAM-SHA-1`), and
  `numParallelCollections` is passed to both tools (FerretDB's SQLite backend needs 1).
  There is no mongo shell in the agent, so the probe is a `mongodump` of one missing
  collection into `/dev/null`: it logs in like the real work and writes nothing. No
  `--quiet`: it silences the tools' own error messages too.

Not for: running them (`stash.agent.dbsteps`) or SQL databases (`databases`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stash.agent.databases import Connection, Engine, tls_files, write_private
from stash.agent.elasticsearch import ELASTICSEARCH
from stash.contract.appbinding import Credentials, Endpoint, TlsMaterial

__all__ = ["NOSQL_ENGINES", "MongoEngine", "RedisEngine"]

_REDIS_RETRY = re.compile(
    r"Could not connect|Connection refused|LOADING|Connection reset|timed out", re.IGNORECASE
)
_REDIS_REFUSED = re.compile(r"WRONGPASS|NOAUTH|invalid password|invalid username", re.IGNORECASE)
_MONGO_RETRY = re.compile(
    r"server selection (error|timeout)|connection refused|no reachable servers|"
    r"i/o timeout|connection reset",
    re.IGNORECASE,
)
_MONGO_REFUSED = re.compile(
    r"authentication failed|AuthenticationFailed|password authentication failed|"
    r"Unsupported authentication mechanism|unable to authenticate",
    re.IGNORECASE,
)
_MONGO_SELECTION = ("--db", "-d", "--nsInclude", "--collection", "-c")


@dataclass(frozen=True)
class RedisEngine(Engine):
    """Redis with redis-dump-go and redis-cli (module docstring)."""

    def connect(
        self,
        endpoint: Endpoint,
        creds: Credentials,
        workdir: Path,
        tls: TlsMaterial | None = None,
    ) -> Connection:
        """The tools' variables, and host/port/user/TLS arguments per tool (`lead` is
        redis-cli's; redis-dump-go's are built from the same facts in `dump_argv`)."""
        host = endpoint.host or "127.0.0.1"
        port = endpoint.port or self.default_port
        env: dict[str, str] = {}
        if creds.password:
            env = {"REDISCLI_AUTH": creds.password, "REDISDUMPGO_AUTH": creds.password}
        lead = ["-h", host, "-p", str(port)]
        if creds.username:
            lead += ["--user", creds.username]
        files = tls_files(tls or TlsMaterial(), workdir)
        if files or endpoint.scheme == "rediss":
            lead.append("--tls")
            for name, option in (("ca", "--cacert"), ("cert", "--cert"), ("key", "--key")):
                if name in files:
                    lead += [option, files[name]]
        where = f"{self.title} at {host}:{port}"
        return Connection(env, tuple(lead), where, creds.username, endpoint.database)

    def dump_argv(
        self, conn: Connection, tool: str, args: Sequence[str]
    ) -> tuple[list[str], dict[str, str], str]:
        """redis-dump-go with the connection's facts, silent, TTLs kept."""
        lead = list(conn.lead)
        argv = [tool or self.dump_tool, "-s", "-ttl=true"]
        argv += ["-host", lead[1], "-port", lead[3]]
        if conn.username:
            argv += ["-user", conn.username]
        if "--tls" in lead:
            argv.append("-tls")
            for option, flag in (("--cacert", "-cacert"), ("--cert", "-cert"), ("--key", "-key")):
                if option in lead:
                    argv += [flag, lead[lead.index(option) + 1]]
        if conn.database and not any(a.lstrip("-").startswith("db") for a in args):
            if not conn.database.isdigit():
                raise ValueError(
                    f"a Redis database is a number (redis://host:6379/3), not {conn.database!r}"
                )
            argv += ["-db", conn.database]
        return [*argv, *args], {}, "dumpfile.resp"

    def load_argv(
        self, conn: Connection, tool: str, path: str, args: Sequence[str]
    ) -> tuple[list[str], dict[str, str]]:
        """`redis-cli --pipe` (the dump selects its databases itself)."""
        return [tool or self.load_tool, *conn.lead, "--no-auth-warning", "--pipe", *args], {}

    def probe_argv(
        self, conn: Connection, tool: str, *, restoring: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        """`redis-cli PING` (whatever the step's tool: redis-dump-go cannot probe)."""
        return [self.load_tool, *conn.lead, "--no-auth-warning", "PING"], {}

    def probe_failure(self, code: int, stdout: str, stderr: str) -> str | None:
        """Only `PONG` is an answer: redis-cli exits 0 with NOAUTH on stdout."""
        if code == 0 and stdout.strip() == "PONG":
            return None
        return "\n".join(t for t in (stderr.strip(), stdout.strip()) if t) or f"exit {code}"

    def retryable(self, stderr: str) -> bool:
        """Whether a failed probe means "not reachable yet" (else: will never work)."""
        return bool(_REDIS_RETRY.search(stderr)) and not self.refused_login(stderr)

    def refused_login(self, stderr: str) -> bool:
        """Whether a failure is the server refusing the credentials."""
        return bool(_REDIS_REFUSED.search(stderr))


@dataclass(frozen=True)
class MongoEngine(Engine):
    """MongoDB with mongodump and mongorestore (module docstring)."""

    def connect(
        self,
        endpoint: Endpoint,
        creds: Credentials,
        workdir: Path,
        tls: TlsMaterial | None = None,
    ) -> Connection:
        """Host/port/user/auth/TLS arguments; the password in a 0600 `--config` file."""
        host = endpoint.host or "127.0.0.1"
        port = endpoint.port or self.default_port
        query = dict(endpoint.query)
        lead = [f"--host={host}", f"--port={port}"]
        if creds.username:
            lead += [
                f"--username={creds.username}",
                f"--authenticationDatabase={query.get('authSource') or 'admin'}",
            ]
            if query.get("authMechanism"):
                lead.append(f"--authenticationMechanism={query['authMechanism']}")
        if creds.password:
            config = workdir / "mongo-tools.yaml"
            write_private(config, f"password: {json.dumps(creds.password)}\n")
            lead.append(f"--config={config}")
        files = tls_files(tls or TlsMaterial(), workdir)
        if files or query.get("tls") == "true" or query.get("ssl") == "true":
            lead.append("--ssl")
            if "ca" in files:
                lead.append(f"--sslCAFile={files['ca']}")
            if "cert" in files and "key" in files:
                pem = workdir / "tls-client.pem"
                write_private(pem, Path(files["cert"]).read_text() + Path(files["key"]).read_text())
                lead.append(f"--sslPEMKeyFile={pem}")
        where = f"{self.title} at {host}:{port}"
        return Connection({}, tuple(lead), where, creds.username, endpoint.database)

    def with_step_options(self, conn: Connection, options: dict[str, str]) -> Connection:
        """`conn` with the step's `authMechanism` (over the URL's) and
        `numParallelCollections` (a positive number)."""
        mechanism = options.get("authMechanism", "")
        lead = [
            a for a in conn.lead if not (mechanism and a.startswith("--authenticationMechanism="))
        ]
        if mechanism and conn.username:
            lead.append(f"--authenticationMechanism={mechanism}")
        parallel = options.get("numParallelCollections", "")
        if parallel:
            if not parallel.isdigit() or int(parallel) < 1:
                raise ValueError(f"numParallelCollections must be a positive number: {parallel!r}")
            lead.append(f"--numParallelCollections={parallel}")
        return dataclasses.replace(conn, lead=tuple(lead))

    def dump_argv(
        self, conn: Connection, tool: str, args: Sequence[str]
    ) -> tuple[list[str], dict[str, str], str]:
        """`mongodump --archive` to stdout (the AppBinding's database if it names one)."""
        argv = [tool or self.dump_tool, *conn.lead, "--archive"]
        if conn.database and not any(a.startswith(_MONGO_SELECTION) for a in args):
            argv.append(f"--db={conn.database}")
        return [*argv, *args], {}, "dumpfile.archive"

    def load_argv(
        self, conn: Connection, tool: str, path: str, args: Sequence[str]
    ) -> tuple[list[str], dict[str, str]]:
        """`mongorestore --archive` from stdin."""
        lead = [a for a in conn.lead if not a.startswith("--numParallelCollections=")]
        parallel = [a for a in conn.lead if a.startswith("--numParallelCollections=")]
        if parallel:  # mongorestore's own name for one collection's insertion workers too
            lead += [*parallel, "--numInsertionWorkersPerCollection=1"]
        return [tool or self.load_tool, *lead, "--archive", *args], {}

    def probe_argv(
        self, conn: Connection, tool: str, *, restoring: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        """A mongodump of one missing collection into /dev/null (module docstring)."""
        lead = [a for a in conn.lead if not a.startswith("--numParallelCollections=")]
        probe = ["--db=admin", "--collection=stash-probe", "--archive=/dev/null"]
        return [self.dump_tool, *lead, *probe], {}

    def retryable(self, stderr: str) -> bool:
        """Whether a failed probe means "not reachable yet" (else: will never work)."""
        return bool(_MONGO_RETRY.search(stderr)) and not self.refused_login(stderr)

    def refused_login(self, stderr: str) -> bool:
        """Whether a failure is the server refusing the credentials."""
        return bool(_MONGO_REFUSED.search(stderr))


NOSQL_ENGINES: dict[str, Engine] = {
    "redis": RedisEngine("redis", "Redis", "redis-dump-go", "redis-cli", 6379),
    "mongo": MongoEngine("mongo", "MongoDB", "mongodump", "mongorestore", 27017),
    "es": ELASTICSEARCH,
}
