"""Run one hook handler (stash-api.md §6.1): httpGet, httpPost, tcpSocket or exec.

What it is for: `run_hook(name, handler, data, ...)` -> `HookResult`, never raising for
what the hook did: success is HTTP 200-399, a TCP connection, or exit code 0; anything
else (a refused connection, a 500, a timeout, a template that fails) is a failed result
whose message names the hook, what it called and why, with the output (response body or
command output) kept, bounded, for the status and the Event.

An empty `host` is the executor's pod (`default_host`: the agent's pod IP or loopback;
hooks in the same pod reach it either way). HTTPS hooks do not verify the server's
certificate, as Kubernetes probes do not. `httpPost.body` and `exec.command` are rendered
as templates over `data` (`stash.contract.hooks.summary_data`). A named port (a string)
is refused: resolving it needs the pod's spec (docs/hooks.md).

Not for: deciding whether a hook runs, or recording it (the agent and the operator).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from stash.api.common import FormEntry, Handler, HTTPGetAction, HTTPPostAction
from stash.contract.hookfunctions import TemplateRuntimeError
from stash.contract.hookrender import render_template
from stash.contract.hooks import HookName, HookResult, hook_action, hook_timeout
from stash.contract.hooktemplate import TemplateError
from stash.hooks.podexec import ExecTarget, PodExec, PodExecError

__all__ = ["run_hook"]

DEFAULT_HOST = "127.0.0.1"
_READ_LIMIT = 64 * 1024


class _HookFailed(Exception):
    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def _port(port: int | str, what: str) -> int:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    raise _HookFailed(
        f"{what} names port {port!r}: named ports are not supported by stash hooks; "
        "give the port number"
    )


def _url(action: HTTPGetAction | HTTPPostAction, default_host: str) -> str:
    scheme = (action.scheme or "HTTP").lower()
    if scheme not in ("http", "https"):
        raise _HookFailed(f"scheme {action.scheme!r} is neither HTTP nor HTTPS")
    host = action.host or default_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    path = action.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    return f"{scheme}://{host}:{_port(action.port, 'the hook')}{path}"


def _render(text: str, data: Mapping[str, Any], where: str) -> str:
    try:
        return render_template(text, data)
    except (TemplateError, TemplateRuntimeError) as exc:
        raise _HookFailed(f"its {where} template failed: {exc}") from None


def _form(entries: Sequence[FormEntry]) -> list[tuple[str, str]]:
    return [(e.key or "", v) for e in entries for v in (e.values or [""])]


async def _http(
    handler: Handler, data: Mapping[str, Any], default_host: str, timeout: float
) -> tuple[str, str]:
    action: HTTPGetAction | HTTPPostAction
    if handler.http_get is not None:
        action, method = handler.http_get, "GET"
    else:
        assert handler.http_post is not None
        action, method = handler.http_post, "POST"
    url = _url(action, default_host)
    headers = {h.name: h.value for h in action.http_headers or []}
    body: Any = None
    if isinstance(action, HTTPPostAction):
        if action.body:
            body = _render(action.body, data, "httpPost.body").encode()
        elif action.form:
            body = aiohttp.FormData(_form(action.form))
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as http,
            http.request(method, url, headers=headers, data=body, ssl=False) as response,
        ):
            raw = await response.content.read(_READ_LIMIT)
            text = raw.decode("utf-8", "replace")
            status = f"{response.status} {response.reason or ''}".strip()
    except TimeoutError:
        raise _HookFailed(f"{method} {url} did not answer within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise _HookFailed(f"{method} {url} failed: {exc or type(exc).__name__}") from None
    if not 200 <= response.status < 400:
        raise _HookFailed(f"{method} {url} answered {status}", text)
    return f"{method} {url} answered {status}", text


async def _tcp(handler: Handler, default_host: str, timeout: float) -> tuple[str, str]:
    assert handler.tcp_socket is not None
    host = handler.tcp_socket.host or default_host
    port = _port(handler.tcp_socket.port, "the hook")
    where = f"{host}:{port}"
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        raise _HookFailed(f"connecting to {where} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise _HookFailed(f"connecting to {where} failed: {exc.strerror or exc}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return f"connected to {where}", ""


async def _exec(
    handler: Handler,
    data: Mapping[str, Any],
    target: ExecTarget | None,
    pod_exec: PodExec | None,
    timeout: float,
) -> tuple[str, str]:
    assert handler.exec is not None
    command = [_render(part, data, "exec.command") for part in handler.exec.command or []]
    if not command:
        raise _HookFailed("exec.command is empty")
    if pod_exec is None or target is None:
        raise _HookFailed(
            "exec hooks need the pods/exec transport, which this executor does not have; "
            "use an httpGet, httpPost or tcpSocket hook"
        )
    container = handler.container_name or target.container
    where = f"pod {target.namespace}/{target.pod}" + (
        f" container {container}" if container else ""
    )
    shown = " ".join(command)
    try:
        code, output = await pod_exec.run(target.namespace, target.pod, container, command, timeout)
    except TimeoutError:
        raise _HookFailed(f"{shown!r} in {where} did not finish within {timeout:g}s") from None
    except PodExecError as exc:
        raise _HookFailed(f"could not run {shown!r} in {where}: {exc}") from None
    if code != 0:
        raise _HookFailed(f"{shown!r} in {where} exited with code {code}", output)
    return f"{shown!r} in {where} exited with code 0", output


async def run_hook(
    name: HookName,
    handler: Handler,
    data: Mapping[str, Any],
    *,
    default_host: str = DEFAULT_HOST,
    exec_target: ExecTarget | None = None,
    pod_exec: PodExec | None = None,
) -> HookResult:
    """Run `handler` as hook `name` within its timeout (module docstring)."""
    action = hook_action(handler)
    timeout = hook_timeout(handler)
    try:
        if action in ("httpGet", "httpPost"):
            coro = _http(handler, data, default_host, timeout)
        elif action == "tcpSocket":
            coro = _tcp(handler, default_host, timeout)
        else:
            coro = _exec(handler, data, exec_target, pod_exec, timeout)
        # the handlers keep to the timeout themselves; this is the backstop
        done, output = await asyncio.wait_for(coro, timeout + 5)
    except _HookFailed as exc:
        return HookResult(name, False, f"{name} hook ({action}) failed: {exc}", exc.output)
    except TimeoutError:
        message = f"{name} hook ({action}) failed: it did not finish within {timeout:g}s"
        return HookResult(name, False, message)
    return HookResult(name, True, f"{name} hook ({action}) succeeded: {done}", output)
