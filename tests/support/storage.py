"""Real storage for restic tests: a local directory, S3 (moto_server), rest-server.

What it is for: starting and stopping the storage servers on 127.0.0.1 (free ports,
own process groups, logs kept for failure messages), and `Storage`, one fresh
repository location on one of them as a Repository `Backend` plus its secret data —
exactly what the operator hands to `stash.restic.restic_target`.

Not for: fixtures (tests/integration/conftest.py) or assertions. A server that cannot
start raises `StorageUnavailable` with its log; fixtures turn that into a failure.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stash.api.repository import Backend
from stash.restic.backend import ResticTarget, restic_target

__all__ = [
    "KINDS",
    "MotoServer",
    "RestServer",
    "Storage",
    "StorageUnavailable",
    "free_port",
]

KINDS = ("local", "s3", "rest", "rest-auth")
"""Storage kinds every backend-parametrized test runs on."""

REST_USER = "stash-user"
REST_PASSWORD = "p@ss:w/rd %&?#é"  # everything that needs quoting in a URL's userinfo
S3_KEY_ID = "AKIASTASHTEST"
S3_SECRET = "stash/secret+key=="


class StorageUnavailable(RuntimeError):
    """A storage server could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """A server subprocess in its own process group, with its output in a log file."""

    name = "server"

    def __init__(self, argv: list[str], port: int, log: Path, env: dict[str, str] | None = None):
        self.argv = argv
        self.port = port
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it accepts connections."""
        with open(self.log, "ab") as out:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    env=self.env,
                )
            except OSError as exc:
                raise StorageUnavailable(f"{self.name} could not start: {exc}") from None
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.proc.poll() is not None:
                raise StorageUnavailable(
                    f"{self.name} exited with {self.proc.returncode}: {self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise StorageUnavailable(
                    f"{self.name} did not listen on 127.0.0.1:{self.port} within "
                    f"{timeout:.0f}s: {self._log_tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            self.proc.wait()


class MotoServer(Server):
    """An S3 endpoint: moto's server mode (in memory: data is gone when it stops)."""

    name = "moto_server"

    def __init__(self, log: Path) -> None:
        port = free_port()
        script = Path(sys.executable).parent / "moto_server"
        argv = [str(script), "-H", "127.0.0.1", "-p", str(port)]
        super().__init__(argv, port, log)
        self.endpoint = f"http://127.0.0.1:{port}"

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def create_bucket(self, name: str) -> None:
        """Create an empty bucket."""
        self.client().create_bucket(Bucket=name)


def sha_htpasswd(user: str, password: str) -> str:
    """An htpasswd line in the `{SHA}` form rest-server accepts (no bcrypt needed)."""
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{user}:{{SHA}}{digest}\n"


class RestServer(Server):
    """restic's rest-server over a data directory, with or without basic auth."""

    name = "rest-server"

    def __init__(
        self,
        binary: str,
        data: Path,
        log: Path,
        *,
        auth: bool = False,
        port: int | None = None,
    ) -> None:
        data.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        argv = [binary, "--path", str(data), "--listen", f"127.0.0.1:{port}"]
        self.auth = auth
        if auth:
            htpasswd = data / ".htpasswd"
            htpasswd.write_text(sha_htpasswd(REST_USER, REST_PASSWORD))
            argv += ["--htpasswd-file", str(htpasswd)]
        else:
            argv.append("--no-auth")
        super().__init__(argv, port, log)
        self.data = data
        self.url = f"http://127.0.0.1:{port}"


@dataclass
class Storage:
    """One fresh repository location: a Repository backend and its secret's data."""

    kind: str
    backend: Backend
    secret: dict[str, bytes]
    where: str
    server: Server | None = field(default=None, repr=False)

    def target(self, scratch: Path, *, password: str | None = None) -> ResticTarget:
        """The restic target (optionally with another RESTIC_PASSWORD)."""
        secret = dict(self.secret)
        if password is not None:
            secret["RESTIC_PASSWORD"] = password.encode()
        return restic_target(self.backend, secret, scratch_dir=scratch, secret_name="repo-creds")


def make_storage(
    kind: str,
    tmp: Path,
    *,
    password: str = "correct horse battery staple",
    moto: MotoServer | None = None,
    rest: RestServer | None = None,
) -> Storage:
    """A new, empty repository location of `kind` (one of KINDS)."""
    secret = {"RESTIC_PASSWORD": password.encode()}
    name = uuid.uuid4().hex[:12]
    if kind == "local":
        path = tmp / f"repo-{name}"
        spec = {"local": {"mountPath": str(path), "hostPath": {"path": str(path)}}}
        where = str(path)
        server: Server | None = None
    elif kind == "s3":
        assert moto is not None
        bucket = f"stash-{name}"
        moto.create_bucket(bucket)
        spec = {"s3": {"endpoint": moto.endpoint, "bucket": bucket, "prefix": f"/demo/{name}/"}}
        secret |= {
            "AWS_ACCESS_KEY_ID": S3_KEY_ID.encode(),
            "AWS_SECRET_ACCESS_KEY": S3_SECRET.encode(),
        }
        where, server = f"{moto.endpoint}/{bucket}", moto
    elif kind in ("rest", "rest-auth"):
        assert rest is not None and rest.auth == (kind == "rest-auth")
        spec = {"rest": {"url": f"{rest.url}/{name}"}}
        if rest.auth:
            secret |= {
                "REST_SERVER_USERNAME": REST_USER.encode(),
                "REST_SERVER_PASSWORD": REST_PASSWORD.encode(),
            }
        where, server = f"{rest.url}/{name}", rest
    else:
        raise ValueError(f"unknown storage kind {kind!r}")
    backend = Backend.model_validate({"storageSecretName": "repo-creds", **spec})
    return Storage(kind, backend, secret, where, server)
