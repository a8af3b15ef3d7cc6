"""Run a command in a container of a pod through the apiserver (`pods/exec`), as kubectl does.

For: one non-interactive command (no stdin, no terminal) in a named container, over a
WebSocket to `…/pods/<pod>/exec` with the remote-command subprotocol `v5.channel.k8s.io`
(`v4.channel.k8s.io` offered too, for apiservers before 1.30); the client's TLS and
credentials are the `Kube` client's. It returns the exit code and what the command wrote
to stdout and stderr, interleaved as it arrived and bounded (the last `max_output`
bytes are kept). Whatever stops the command from running is a `PodExecError` whose
message says what the apiserver or the kubelet said: the pod or the container does not
exist (404/400), RBAC refused `pods/exec` (403: it needs `get` and `create`), the
container is not running, the executable is missing. A command still running after
`timeout` seconds is `PodExecTimeout` (its output so far attached); the connection is
closed, and with it the command (as far as the node's runtime ends it).

    exec_ = PodExec(kube)
    code, output = await exec_.run("ns", "pod-0", "app", ["sh", "-c", "sync"], timeout=30)

Callers that want a fake in unit tests type against `ExecTransport`.

Not for: interactive sessions, stdin, attach or port-forward.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp

from stash.kube.client import Kube
from stash.kube.resources import PODS

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
STDOUT, STDERR, STATUS = 1, 2, 3
#: Output kept per command by default (the end of it).
MAX_OUTPUT = 64 * 1024

# The body of a refused upgrade (aiohttp's handshake error carries only the status).
_refusal: contextvars.ContextVar[bytes] = contextvars.ContextVar("refusal", default=b"")


class ExecTransport(Protocol):
    """What runs exec hooks: `PodExec` in a cluster, a fake in unit tests."""

    async def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: Sequence[str],
        timeout: float,
    ) -> tuple[int, str]:
        """Run `command` in `container` of `pod` (None: the apiserver's choice, which is
        the only container, or an error naming them); (exit code, bounded output)."""
        ...


class PodExecError(Exception):
    """The command could not be run; `status` is the HTTP status of a refused upgrade
    (403 forbidden, 404 no such pod, 400 no such container, 500 the kubelet's error),
    None when it was refused after the connection was made (e.g. executable missing)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PodExecTimeout(PodExecError, TimeoutError):
    """The command was still running at the deadline; `output` is what it wrote so far."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class _RefusalKeepingResponse(aiohttp.ClientResponse):
    """Reads the body of a response that is not a protocol switch, for the error message."""

    async def start(self, connection: Any) -> aiohttp.ClientResponse:
        resp = await super().start(connection)
        if self.status != 101:
            _refusal.set(await self.read())
        return resp


class _Tail:
    """The last `limit` bytes written, and how many were dropped before them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        out = self.data.decode(errors="replace")
        return f"[{self.dropped} bytes of output dropped]\n{out}" if self.dropped else out


def _message_of(body: bytes) -> str:
    """The `message` of a Status body, else the body as text (shortened)."""
    text = body.decode(errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    return str(data.get("message") or text)[:500] if isinstance(data, dict) else text[:500]


def exit_code_of(status: dict[str, Any]) -> int:
    """The exit code a remote-command Status reports; raise PodExecError for a failure
    that is not a command's own exit (the command never ran)."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause.get("message", "1"))
    raise PodExecError(str(status.get("message") or status))


class PodExec:
    """Runs commands in containers through one apiserver, with `kube`'s credentials."""

    def __init__(self, kube: Kube, max_output: int = MAX_OUTPUT) -> None:
        self.kube = kube
        self.max_output = max_output

    async def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: Sequence[str],
        timeout: float,
        stdout: Callable[[bytes], None] | None = None,
    ) -> tuple[int, str]:
        """Run `command` in `container` of `pod` (None: the apiserver's choice, which is
        the only container, or an error naming them); (exit code, bounded output). With
        `stdout`, what the command writes to stdout goes there, every byte, in order (a
        tar stream, say), and the output returned is stderr's."""
        what = f"exec in {namespace}/{pod} container {container!r}"
        if not command:
            raise PodExecError(f"{what}: no command given")
        output = _Tail(self.max_output)
        try:
            async with asyncio.timeout(timeout):
                return await self._run(
                    namespace, pod, container, command, _Sink(output, stdout), what
                )
        except TimeoutError:
            raise PodExecTimeout(
                f"{what}: still running after {timeout:g}s", output.text()
            ) from None

    async def _run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: Sequence[str],
        output: _Sink,
        what: str,
    ) -> tuple[int, str]:
        query = [("container", container)] if container else []
        query += [("stdout", "true"), ("stderr", "true")]
        query += [("command", str(arg)) for arg in command]
        host = self.kube.host.rstrip("/")
        url = f"{host}{PODS.path(namespace, pod, 'exec')}?{urlencode(query)}"
        _refusal.set(b"")
        headers = await self.kube.transport.auth_headers()
        shared = self.kube.transport.session
        async with aiohttp.ClientSession(
            connector=shared.connector,
            connector_owner=False,
            response_class=_RefusalKeepingResponse,
            # The caller's `timeout` bounds the command; only connecting has its own.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        ) as session:
            try:
                ws = await session.ws_connect(url, protocols=(V5, V4), headers=headers)
            except aiohttp.WSServerHandshakeError as exc:
                message = _message_of(_refusal.get()) or exc.message
                raise PodExecError(
                    f"{what}: refused (HTTP {exc.status}): {message}", exc.status
                ) from None
            except aiohttp.ClientError as exc:
                raise PodExecError(f"{what}: {type(exc).__name__}: {exc}") from None
            try:
                async with ws:
                    status = await _read(ws, output)
            except PodExecError as exc:
                raise PodExecError(f"{what}: {exc}") from None
            except aiohttp.ClientError as exc:
                raise PodExecError(f"{what}: {type(exc).__name__}: {exc}") from None
        if status is None:
            raise PodExecError(f"{what}: the stream ended without the command's status")
        try:
            return exit_code_of(status), output.tail.text()
        except PodExecError as exc:
            raise PodExecError(f"{what}: {exc}") from None


class _Sink:
    """Where the channels go: stdout to the caller's sink if any, the rest to the tail."""

    def __init__(self, tail: _Tail, stdout: Callable[[bytes], None] | None) -> None:
        self.tail, self.stdout = tail, stdout

    def add(self, channel: int, data: bytes) -> None:
        if channel == STDOUT and self.stdout is not None:
            self.stdout(data)
        else:
            self.tail.add(data)


async def _read(ws: aiohttp.ClientWebSocketResponse, output: _Sink) -> dict[str, Any] | None:
    """Collect stdout and stderr until the status arrives (None: the stream ended first)."""
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
            continue
        channel, data = msg.data[0], msg.data[1:]
        if channel in (STDOUT, STDERR):
            output.add(channel, data)
        elif channel == STATUS and data:
            try:
                status: dict[str, Any] = json.loads(data)
            except ValueError:
                raise PodExecError(f"unreadable status: {data[:200]!r}") from None
            return status
    return None
