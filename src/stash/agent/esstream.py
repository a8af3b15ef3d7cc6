"""The Elasticsearch/OpenSearch dump as one stream: the program restic runs for
`backup-es` (`--stdin-from-command`) and the load tool `restic dump` feeds for
`restore-es` (`python -m stash.agent.esstream dump|load|probe ...`).

What it is for: elasticdump moves one index and one kind of thing at a time (and its
cluster-wide `settings`/`alias` dumps are broken), so the dump is a sequence of
sections, one per index and kind, in the order a load needs them: `settings` (creates
the index with its shard count and analysis), `mapping`, `alias`, `data`. Each section
is a header line `{"#stash": {"index": "<name>", "type": "<kind>"}}` (`#` is not allowed
in an index name, and no elasticdump record has that key) followed by elasticdump's own
NDJSON records, unchanged (`--output=$`: the data elasticdump writes straight into our
stdout, so the documents never pass through Python and nothing is written to disk; the
small kinds are dumped three at a time into memory, then written in order). The load splits
the stream at the headers and pipes each section into `elasticdump --input=$` for that
index; after a `data` section it checks that the index holds at least as many documents
as were sent (elasticdump can exit 0 after a rejected bulk item).

* Which indices: `_cat/indices/<pattern>` (default `*`: every open index, without the
  hidden ones whose names start with `.`); none found is an error (no empty snapshot).
* Credentials: a 0600 ini file (`user=`/`password=` as JSON strings, which is how the
  `ini` package elasticdump reads with `--httpAuthFile` unquotes them); the password is
  never an argument, and every message relayed from elasticdump is stripped of it (also
  URL-encoded: elasticdump puts it into the URL it prints in some errors).
* TLS: a CA, a client certificate and key (all files) go to elasticdump
  (`--input-ca`/`--output-ca`, `--*-cert`, `--*-key`, and `--tlsAuth`, without which
  elasticdump 6 reads none of them) and to our own listing requests.
* Exit status: 0 when every section was dumped or loaded; 1 with a message naming the
  index and kind otherwise (a killed elasticdump is named with its signal), so restic
  keeps no snapshot of a dump that died half-way.

Not for: the step (`stash.agent.dbsteps`) or the engine's command lines
(`stash.agent.elasticsearch`).
"""

from __future__ import annotations

import argparse
import base64
import configparser
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["KINDS", "Cluster", "dump", "load", "main", "section_header"]

#: The kinds of a section, in the order a load needs them.
KINDS = ("settings", "mapping", "alias", "data")
HEADER_KEY = "#stash"
_TIMEOUT = 30.0
#: elasticdumps of settings, mappings and aliases run at once (each is mostly Node's start).
_PARALLEL = 3


class StreamError(Exception):
    """What went wrong, said for the user (the program prints it and exits 1)."""


def section_header(index: str, kind: str) -> bytes:
    """The line that starts the section of `kind` of `index`."""
    return json.dumps({HEADER_KEY: {"index": index, "type": kind}}).encode() + b"\n"


@dataclass(frozen=True)
class Cluster:
    """How to reach the cluster: its URL and the files elasticdump and we log in with."""

    url: str
    auth_file: str = ""
    ca: str = ""
    cert: str = ""
    key: str = ""
    elasticdump: str = "elasticdump"

    def password(self) -> str:
        """The password of the auth file ('' without one)."""
        return _read_auth(self.auth_file)[1] if self.auth_file else ""

    def redact(self, text: str) -> str:
        """`text` without the password, plain or URL-encoded."""
        secret = self.password()
        if not secret:
            return text
        for form in {
            secret,
            urllib.parse.quote(secret, safe=""),
            urllib.parse.quote(secret, safe="!$&'()*+,;=:~"),
            urllib.parse.quote(secret),
        }:
            text = text.replace(form, "******")
        return text

    def tool_args(self, side: str) -> list[str]:
        """elasticdump's login and TLS flags for `side` ("input" or "output")."""
        out = [f"--httpAuthFile={self.auth_file}"] if self.auth_file else []
        for name, value in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if value:
                out.append(f"--{side}-{name}={value}")
        if self.ca or self.cert or self.key:
            out.append("--tlsAuth")  # without it elasticdump ignores all three
        return out

    def request(self, method: str, path: str) -> Any:
        """The decoded JSON answer of one request; StreamError with what the server said."""
        req = urllib.request.Request(self.url.rstrip("/") + path, method=method)
        if self.auth_file:
            user, password = _read_auth(self.auth_file)
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        context = None
        if self.url.startswith("https:"):
            context = ssl.create_default_context(cafile=self.ca or None)
            if self.cert and self.key:
                context.load_cert_chain(self.cert, self.key)
        try:
            with urllib.request.urlopen(req, timeout=_TIMEOUT, context=context) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")[:500]
            raise StreamError(self.redact(f"{method} {path}: HTTP {exc.code} {body}")) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StreamError(self.redact(f"{method} {path}: {reason}")) from None


def _read_auth(path: str) -> tuple[str, str]:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string("[auth]\n" + Path(path).read_text(encoding="utf-8"))
    section = parser["auth"]
    return json.loads(section.get("user", '""')), json.loads(section.get("password", '""'))


def list_indices(cluster: Cluster, pattern: str) -> list[str]:
    """The open indices matching `pattern` (`*`: without the hidden `.` ones), sorted."""
    quoted = urllib.parse.quote(pattern or "*", safe="*,-")
    rows = cluster.request(
        "GET", f"/_cat/indices/{quoted}?format=json&h=index&expand_wildcards=open"
    )
    names = sorted(str(row["index"]) for row in rows or [])
    if pattern in ("", "*"):
        names = [n for n in names if not n.startswith(".")]
    return names


def _elasticdump(
    cluster: Cluster, index: str, kind: str, direction: str, args: Sequence[str]
) -> list[str]:
    target = f"{cluster.url.rstrip('/')}/{urllib.parse.quote(index, safe='')}"
    side = "input" if direction == "dump" else "output"
    ends = [f"--input={target}", "--output=$"] if direction == "dump" else ["--input=$"]
    if direction == "load":
        ends.append(f"--output={target}")
    extra = list(args)
    if kind == "data" and not any(a.startswith("--limit") for a in extra):
        extra.append("--limit=1000")
    return [cluster.elasticdump, *ends, f"--type={kind}", *cluster.tool_args(side), *extra]


def _outcome(cluster: Cluster, code: int, said: Path, what: str) -> None:
    if code == 0:
        return
    how = f"exited with status {code}"
    if code < 0:
        try:
            how = f"was killed ({signal.Signals(-code).name})"
        except ValueError:
            how = f"was killed by signal {-code}"
    tail = cluster.redact(said.read_text(encoding="utf-8", errors="replace").strip()[-600:])
    # the summary goes last: restic and the step keep the end of what we say
    said_before = f"elasticdump said: {tail}\n" if tail else ""
    raise StreamError(f"{said_before}elasticdump {what} {how}")


def dump(cluster: Cluster, pattern: str, args: Sequence[str], out: IO[bytes]) -> int:
    """Write every section of every index matching `pattern` to `out`; the index count."""
    indices = list_indices(cluster, pattern)
    if not indices:
        raise StreamError(f"no index matches {pattern or '*'!r} at {cluster.url}: nothing to dump")
    with tempfile.TemporaryDirectory(prefix="esstream-") as scratch:
        pool = ThreadPoolExecutor(_PARALLEL)
        try:
            small = {
                (index, kind): pool.submit(
                    _dump_small, cluster, index, kind, args, Path(scratch) / f"{n}.{kind}"
                )
                for n, index in enumerate(indices)
                for kind in KINDS[:-1]
            }
            said = Path(scratch) / "stderr"
            for index in indices:
                for kind in KINDS[:-1]:
                    out.write(section_header(index, kind) + small[index, kind].result())
                out.write(section_header(index, "data"))
                out.flush()
                with said.open("wb") as err:
                    code = subprocess.run(
                        _elasticdump(cluster, index, "data", "dump", args),
                        stdin=subprocess.DEVNULL,
                        stdout=out.fileno(),
                        stderr=err,
                        check=False,
                    ).returncode
                _outcome(cluster, code, said, f"--type=data of index {index!r}")
        finally:
            pool.shutdown(cancel_futures=True)
    return len(indices)


def _dump_small(cluster: Cluster, index: str, kind: str, args: Sequence[str], said: Path) -> bytes:
    """elasticdump's output of a small kind (settings, mapping, alias) of one index."""
    with said.open("wb") as err:
        done = subprocess.run(
            _elasticdump(cluster, index, kind, "dump", args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            check=False,
        )
    _outcome(cluster, done.returncode, said, f"--type={kind} of index {index!r}")
    return done.stdout


def _header(line: bytes) -> tuple[str, str] | None:
    if not line.startswith(b'{"' + HEADER_KEY.encode()):
        return None
    fields = json.loads(line)[HEADER_KEY]
    if fields.get("type") not in KINDS or not fields.get("index"):
        raise StreamError(f"unknown section header in the dump: {line[:200]!r}")
    return str(fields["index"]), str(fields["type"])


class _Section:
    """One running `elasticdump --input=$` fed with a section's records."""

    def __init__(self, cluster: Cluster, index: str, kind: str, args: Sequence[str], scratch: Path):
        self.cluster, self.index, self.kind = cluster, index, kind
        self.sent = 0
        self.said = scratch / "stderr"
        with self.said.open("wb") as err:
            self.proc = subprocess.Popen(
                _elasticdump(cluster, index, kind, "load", args),
                stdin=subprocess.PIPE,
                stdout=err,
                stderr=subprocess.STDOUT,
            )

    def feed(self, line: bytes) -> None:
        """Send one record."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line)
        except BrokenPipeError:
            self.finish()
            raise StreamError(
                f"elasticdump stopped reading the {self.kind} of {self.index!r}"
            ) from None
        self.sent += 1

    def finish(self) -> None:
        """Wait for elasticdump; check it loaded what it was sent."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        code = self.proc.wait()
        _outcome(self.cluster, code, self.said, f"--type={self.kind} into index {self.index!r}")
        if self.kind == "data" and self.sent:
            name = urllib.parse.quote(self.index, safe="")
            self.cluster.request("POST", f"/{name}/_refresh")
            count = int(self.cluster.request("GET", f"/{name}/_count")["count"])
            if count < self.sent:
                raise StreamError(
                    f"index {self.index!r} holds {count} documents after {self.sent} were "
                    "loaded (elasticdump said nothing; look at the cluster's logs)"
                )


def load(cluster: Cluster, args: Sequence[str], stream: IO[bytes]) -> int:
    """Load every section of `stream`; the number of indices."""
    indices: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="esstream-") as scratch:
        section: _Section | None = None
        for line in stream:
            found = _header(line)
            if found is None:
                if section is None:
                    raise StreamError("this is not a backup-es dump (no section header first)")
                section.feed(line)
                continue
            if section is not None:
                section.finish()
            indices.add(found[0])
            section = _Section(cluster, found[0], found[1], args, Path(scratch))
        if section is not None:
            section.finish()
    if not indices:
        raise StreamError("the dump is empty")
    return len(indices)


def probe(cluster: Cluster) -> str:
    """What the cluster says it is (`GET /`): distribution and version."""
    about = cluster.request("GET", "/")
    version = about.get("version") or {}
    return f"{version.get('distribution', 'elasticsearch')} {version.get('number', '?')}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stash.agent.esstream", epilog="-- ARGS: extra elasticdump arguments"
    )
    p.add_argument("action", choices=("dump", "load", "probe"))
    p.add_argument("--url", required=True)
    p.add_argument("--auth-file", default="")
    p.add_argument("--ca", default="")
    p.add_argument("--cert", default="")
    p.add_argument("--key", default="")
    p.add_argument("--elasticdump", default="elasticdump")
    p.add_argument("--indices", default="*")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one action; 0, or 1 with the reason on stderr."""
    given = list(sys.argv[1:] if argv is None else argv)
    extra = given[given.index("--") + 1 :] if "--" in given else []
    ns = _parser().parse_args(given[: given.index("--")] if "--" in given else given)
    cluster = Cluster(ns.url, ns.auth_file, ns.ca, ns.cert, ns.key, ns.elasticdump)
    try:
        if ns.action == "probe":
            print(probe(cluster))
        elif ns.action == "dump":
            count = dump(cluster, ns.indices, extra, sys.stdout.buffer)
            print(f"dumped {count} index(es)", file=sys.stderr)
        else:
            count = load(cluster, extra, sys.stdin.buffer)
            print(f"loaded {count} index(es)", file=sys.stderr)
    except StreamError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"cannot run {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
