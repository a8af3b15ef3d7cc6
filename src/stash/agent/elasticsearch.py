"""The Elasticsearch/OpenSearch engine of the addon steps (stash-api.md §9), with the
same `Engine` interface as the others (`stash.agent.databases`).

What it is for: `ELASTICSEARCH` (key `es`). Its dump "tool" is our stream program
(`python -m stash.agent.esstream`, which runs elasticdump once per index and kind and
writes one NDJSON stream, stored as `dumpfile.ndjson`); its load tool is the same
program reading that stream from `restic dump`. The step's tool (`backupCMD` /
`restoreCMD`) names the elasticdump to run.

* Endpoint: the AppBinding's URL, `http://` or `https://` (default port 9200); a path
  segment (`http://es:9200/logs-*`) is the index pattern, unless the step's `indices`
  param gives one (default `*`: every open index but the hidden `.` ones). URL query
  parameters are refused: none is understood.
* Credentials: `username` and `password` of the AppBinding's Secret, in a 0600 ini
  file elasticdump reads with `--httpAuthFile` (and the stream program for its own
  requests); a password without a username is refused.
* TLS: only with `https://`: the CA (`ca.crt` / `caBundle`) and a client certificate
  with its key (`tls.crt` + `tls.key`, both or neither) as 0600 files. TLS material for
  an `http://` URL is refused rather than ignored.
* The probe is `GET /` with those credentials: HTTP 401 is a refused login (fail at
  once), a refused or timed-out connection or HTTP 503 is "not up yet".

Not for: the stream format or running elasticdump (`stash.agent.esstream`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stash.agent.databases import Connection, Engine, tls_files, write_private
from stash.contract.appbinding import Credentials, Endpoint, TlsMaterial

__all__ = ["ELASTICSEARCH", "ElasticsearchEngine"]

STREAM = (sys.executable, "-m", "stash.agent.esstream")
_RETRY = re.compile(
    r"Connection refused|timed out|HTTP 503|Connection reset|Remote end closed|"
    r"Temporary failure in name resolution|Name or service not known",
    re.IGNORECASE,
)
_REFUSED = re.compile(r"HTTP 401|security_exception.*authenticat", re.IGNORECASE)


@dataclass(frozen=True)
class ElasticsearchEngine(Engine):
    """Elasticsearch/OpenSearch with elasticdump (module docstring)."""

    def connect(
        self,
        endpoint: Endpoint,
        creds: Credentials,
        workdir: Path,
        tls: TlsMaterial | None = None,
    ) -> Connection:
        """The stream program's URL, auth file and TLS files (ValueError when the
        AppBinding asks for something this engine cannot do)."""
        scheme = endpoint.scheme or "http"
        if scheme not in ("http", "https"):
            raise ValueError(
                f"an Elasticsearch/OpenSearch URL is http:// or https://, not {scheme}://"
            )
        if endpoint.query:
            names = ", ".join(sorted({k for k, _ in endpoint.query}))
            raise ValueError(
                f"query parameters in the AppBinding's URL are not supported for "
                f"Elasticsearch/OpenSearch: {names}"
            )
        host = endpoint.host or "127.0.0.1"
        port = endpoint.port or self.default_port
        lead = [f"--url={scheme}://{host}:{port}"]
        if creds.password and not creds.username:
            raise ValueError(
                "the AppBinding's Secret has a password but no username "
                "(Elasticsearch/OpenSearch log in with both)"
            )
        if creds.username:
            auth = workdir / "es-auth.ini"
            text = f"user={json.dumps(creds.username)}\npassword={json.dumps(creds.password)}\n"
            write_private(auth, text)
            lead.append(f"--auth-file={auth}")
        material = tls or TlsMaterial()
        if (material.cert or material.key) and not (material.cert and material.key):
            raise ValueError(
                "a client certificate needs its key: the AppBinding's tlsSecret must hold "
                "both tls.crt and tls.key, or neither"
            )
        files = tls_files(material, workdir)
        if files and scheme != "https":
            raise ValueError(
                "the AppBinding gives TLS material (tlsSecret or caBundle) but its URL is "
                "http://; use https:// so it is not silently ignored"
            )
        lead += [f"--{name}={path}" for name, path in sorted(files.items())]
        where = f"{self.title} at {host}:{port}"
        return Connection({}, tuple(lead), where, creds.username, endpoint.database)

    def with_step_options(self, conn: Connection, options: dict[str, str]) -> Connection:
        """`conn` with the step's `indices` pattern (over the URL's path)."""
        pattern = options.get("indices", "") or conn.database
        if not pattern:
            return conn
        if any(c in pattern for c in ' "\\/?<>|#'):
            raise ValueError(f"indices is a comma-separated index pattern, not {pattern!r}")
        return dataclasses.replace(conn, lead=(*conn.lead, f"--indices={pattern}"))

    def tool_name(self, argv: Sequence[str]) -> str:
        """elasticdump (what the stream program runs), for messages."""
        given = [a.split("=", 1)[1] for a in argv if a.startswith("--elasticdump=")]
        return Path(given[0]).name if given else self.dump_tool

    def dump_argv(
        self, conn: Connection, tool: str, args: Sequence[str]
    ) -> tuple[list[str], dict[str, str], str]:
        """The stream program's dump of every selected index."""
        argv = [*STREAM, "dump", *conn.lead, f"--elasticdump={tool or self.dump_tool}"]
        return [*argv, "--", *args], {}, "dumpfile.ndjson"

    def load_argv(
        self, conn: Connection, tool: str, path: str, args: Sequence[str]
    ) -> tuple[list[str], dict[str, str]]:
        """The stream program's load from stdin."""
        lead = [a for a in conn.lead if not a.startswith("--indices=")]
        argv = [*STREAM, "load", *lead, f"--elasticdump={tool or self.load_tool}"]
        return [*argv, "--", *args], {}

    def probe_argv(
        self, conn: Connection, tool: str, *, restoring: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        """`GET /` with the step's credentials."""
        lead = [a for a in conn.lead if not a.startswith("--indices=")]
        return [*STREAM, "probe", *lead], {}

    def retryable(self, stderr: str) -> bool:
        """Whether a failed probe means "not reachable yet" (else: will never work)."""
        return bool(_RETRY.search(stderr)) and not self.refused_login(stderr)

    def refused_login(self, stderr: str) -> bool:
        """Whether a failure is the server refusing the credentials."""
        return bool(_REFUSED.search(stderr))


ELASTICSEARCH = ElasticsearchEngine(
    "es", "Elasticsearch/OpenSearch", "elasticdump", "elasticdump", 9200
)
