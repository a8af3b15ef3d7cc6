"""The stand-in kubelet's exec endpoint: `kubectl exec` through the real apiserver.

The apiserver proxies `pods/exec` to the kubelet of the pod's node, at the Node's
InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`, over TLS with its kubelet
client certificate (`--kubelet-client-certificate`), and, because the Node declares the
`ExtendWebSocketsToKubelet` feature, passes a WebSocket upgrade through unchanged (no
SPDY translation). This server answers `GET|POST /exec/{namespace}/{pod}[/{uid}]/
{container}?command=..&input=1&output=1&error=1&tty=1` with the remote-command channel
protocol `v5.channel.k8s.io` (or `v4.channel.k8s.io`): one byte of channel (0 stdin,
1 stdout, 2 stderr, 3 status, 4 terminal size) before each binary message; in v5 the
client half-closes stdin with the message [255, 0]. The status (a metav1.Status) says
Success, NonZeroExitCode with the exit code, or InternalError when the command cannot
start. The command runs inside the container's running process's view (the pod
runner's; `stash_dev.podrunner.containerexec`).

A client is authenticated as a kubelet does it with x509: a certificate of the cluster CA,
its common name the user and its organisations the groups; then authorised with a
SubjectAccessReview for `nodes/proxy` of the pod's node (verb `get` for GET, `create` for
POST). The apiserver's certificate (`kube-apiserver-kubelet-client`) is allowed by
`system:kubelet-api-admin`, bound to it as kubeadm does (`grant_apiserver_access`).

Divergences from a real kubelet (docs/architecture.md): WebSockets only (no SPDY, no
pre-v4 protocols); no bearer-token clients; one endpoint for every stand-in Node; only
containers the pod runner started can be entered (the stand-in reports every container
Running, but runs none itself); a command is killed when its connection closes. Not
for: attach, port-forward, logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import ssl
import struct
import termios
from typing import Any

from aiohttp import WSMsgType, web

from stash.kube.access import ResourceAttributes, Subject, review_access
from stash.kube.client import Conflict, Kube, NotFound, Resource
from stash.kube.resources import PODS
from stash_dev.podrunner.containerexec import ExecProcess, ExecStartError, exec_in_container
from stash_dev.podrunner.registry import ContainerRegistry

log = logging.getLogger("stash_dev.kubelet_exec")

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)
STDIN, STDOUT, STDERR, STATUS, RESIZE = range(5)
#: v5: a client message [CLOSE, channel] half-closes that channel.
CLOSE = 255
#: The common name of the apiserver's kubelet client certificate (stash_dev.pki).
APISERVER_CLIENT = "kube-apiserver-kubelet-client"
_CHUNK = 32 * 1024
_CLUSTER_ROLE_BINDINGS = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
)


async def grant_apiserver_access(kube: Kube) -> None:
    """Bind `system:kubelet-api-admin` to the apiserver's kubelet client user (kubeadm's
    `kubeadm:kubelet-api-admin` binding), so kubelets let it exec."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "stash-dev:kubelet-api-admin"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kubelet-api-admin",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": APISERVER_CLIENT}
        ],
    }
    with contextlib.suppress(Conflict):
        await kube.create(_CLUSTER_ROLE_BINDINGS, binding)


def exit_status(code: int) -> dict[str, Any]:
    """The status a kubelet writes on channel 3 when the command exited with `code`."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def start_error_status(message: str) -> dict[str, Any]:
    """The status of a command that could not start in the container."""
    text = f"error executing command in container: {message}"
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {text}",
        "reason": "InternalError",
        "details": {"causes": [{"message": text}]},
        "code": 500,
    }


def negotiate(offered: str) -> str | None:
    """The first protocol of the client's `Sec-WebSocket-Protocol` list that we speak."""
    for proto in (p.strip() for p in offered.split(",")):
        if proto in PROTOCOLS:
            return proto
    return None


def server_ssl_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """TLS for the endpoint: our serving certificate; clients must present a certificate
    of the cluster CA (the apiserver's kubelet client certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_subject(peercert: dict[str, Any] | None) -> Subject | None:
    """The user a verified client certificate names (common name; organisations are
    groups), as a kubelet's x509 authenticator reads it; None without one."""
    user, groups = None, []
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = str(value)
            elif key == "organizationName":
                groups.append(str(value))
    if not user:
        return None
    return Subject(user=user, groups=[*groups, "system:authenticated"])


class ExecServer:
    """Serves /exec for the Pods bound to `nodes`, entering containers in `registry`."""

    def __init__(
        self,
        kube: Kube,
        nodes: set[str],
        registry: ContainerRegistry | None = None,
    ) -> None:
        self.kube = kube
        self.nodes = nodes
        self.registry = registry or ContainerRegistry()
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        """The aiohttp application (both path forms of the kubelet's exec route)."""
        app = web.Application()
        for path in ("/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"):
            app.router.add_route("GET", path, self.handle)
            app.router.add_route("POST", path, self.handle)
        return app

    async def start(self, host: str, port: int, context: ssl.SSLContext) -> None:
        """Listen on https://`host`:`port`."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=context).start()

    async def stop(self) -> None:
        """Stop listening (commands still running are killed with their connections)."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One exec: check, look the container up, upgrade, run, report the status."""
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        who = client_subject(peer)
        if who is None:
            return web.Response(status=401, text="Unauthorized")
        q = request.query
        argv = q.getall("command", [])
        stdin, tty = q.get("input") == "1", q.get("tty") == "1"
        stdout, stderr = q.get("output") == "1", q.get("error") == "1" and not tty
        if not (stdin or stdout or stderr):
            return web.Response(
                status=400, text="you must specify at least 1 of stdin, stdout, stderr"
            )
        info = request.match_info
        ns, name, container = info["ns"], info["pod"], info["container"]
        try:
            pod = await self.kube.get(PODS, name, ns)
        except NotFound:
            return web.Response(status=404, text="pod does not exist")
        uid = info.get("uid") or pod["metadata"]["uid"]
        node = pod["spec"].get("nodeName")
        if node not in self.nodes or uid != pod["metadata"]["uid"]:
            return web.Response(status=404, text="pod does not exist")
        verb = "create" if request.method == "POST" else "get"
        what = ResourceAttributes(verb, "", "nodes", "", node, "proxy")
        if not (await review_access(self.kube, who, what)).allowed:
            return web.Response(
                status=403,
                text=f"Forbidden (user={who.user}, verb={verb}, resource=nodes, subresource=proxy)",
            )
        record = self.registry.find(uid, container)
        if record is None:
            return web.Response(
                status=500,
                text=f"container not found ({container!r}): no process of it runs on this "
                "node (the stand-in kubelet runs no containers; the pod runner does)",
            )
        protocol = negotiate(request.headers.get("Sec-WebSocket-Protocol", ""))
        if request.headers.get("Upgrade", "").lower() != "websocket" or protocol is None:
            return web.Response(
                status=400,
                text=f"the stand-in kubelet serves exec over WebSocket with {', '.join(PROTOCOLS)}",
            )
        ws = web.WebSocketResponse(protocols=(protocol,), autoping=True)
        await ws.prepare(request)
        first = STDOUT if stdout else (STDERR if stderr else STATUS)
        await ws.send_bytes(bytes([first]))  # "connected", as the kubelet says it
        try:
            proc = await exec_in_container(record, argv, stdin=stdin, tty=tty)
        except ExecStartError as exc:
            await _send_status(ws, start_error_status(str(exc)))
            return ws
        try:
            code = await _Session(ws, proc, protocol, stdout, stderr).run()
        finally:
            proc.kill()
            proc.close()
        if code is not None:
            await _send_status(ws, exit_status(code))
        return ws


async def _send_status(ws: web.WebSocketResponse, status: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_bytes(bytes([STATUS]) + json.dumps(status).encode())
        await ws.close()


class _Session:
    """Copies between one WebSocket and one command until the command has ended and its
    output is sent (returns its exit code) or the client went away (returns None)."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        proc: ExecProcess,
        protocol: str,
        stdout: bool,
        stderr: bool,
    ) -> None:
        self.ws, self.proc, self.protocol = ws, proc, protocol
        self.stdout, self.stderr = stdout, stderr

    async def run(self) -> int | None:
        receiving = asyncio.create_task(self._receive())
        finished = asyncio.create_task(self._finish())
        try:
            await asyncio.wait({receiving, finished}, return_when=asyncio.FIRST_COMPLETED)
            if not finished.done():
                return None  # the client is gone
            return finished.result()
        finally:
            receiving.cancel()
            finished.cancel()
            await asyncio.gather(receiving, finished, return_exceptions=True)

    async def _finish(self) -> int:
        """The exit code, once the command ended and all of its output is sent."""
        code, *_ = await asyncio.gather(self.proc.wait(), *self._copiers())
        return int(code)

    def _copiers(self) -> list[Any]:
        proc = self.proc.proc
        if self.proc.terminal is not None:
            return [self._copy_terminal(self.proc.terminal)]
        assert proc.stdout is not None and proc.stderr is not None
        return [
            self._copy(proc.stdout, STDOUT if self.stdout else None),
            self._copy(proc.stderr, STDERR if self.stderr else None),
        ]

    async def _copy(self, stream: asyncio.StreamReader, channel: int | None) -> None:
        while chunk := await stream.read(_CHUNK):
            if channel is not None:
                await self.ws.send_bytes(bytes([channel]) + chunk)

    async def _copy_terminal(self, master: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(os.dup(master), "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while True:
                try:
                    chunk = await reader.read(_CHUNK)
                except OSError:  # EIO: the terminal's last user is gone
                    return
                if not chunk:
                    return
                await self.ws.send_bytes(bytes([STDOUT]) + chunk)
        finally:
            transport.close()

    async def _receive(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel == CLOSE and self.protocol == V5 and data[:1] == bytes([STDIN]):
                self._close_stdin()
            elif channel == STDIN:
                await self._write_stdin(data)
            elif channel == RESIZE and self.proc.terminal is not None:
                self._resize(data)

    async def _write_stdin(self, data: bytes) -> None:
        if self.proc.terminal is not None:
            await _write_all(self.proc.terminal, data)
            return
        stdin = self.proc.proc.stdin
        if stdin is None or stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            stdin.write(data)
            await stdin.drain()

    def _close_stdin(self) -> None:
        if self.proc.terminal is not None:
            with contextlib.suppress(OSError):  # ^D: end of input on a terminal
                os.write(self.proc.terminal, b"\x04")
        elif self.proc.proc.stdin is not None:
            self.proc.proc.stdin.close()

    def _resize(self, data: bytes) -> None:
        try:
            size = json.loads(data)
            packed = struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0)
        except (ValueError, KeyError, TypeError):
            return
        assert self.proc.terminal is not None
        with contextlib.suppress(OSError):
            fcntl.ioctl(self.proc.terminal, termios.TIOCSWINSZ, packed)


async def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            await asyncio.sleep(0.01)
        except OSError:
            return
