"""Running one hook (`stash.hooks.run_hook`) and the policies around it
(`stash.contract.hooks`): what counts as success, what a failure says, what is kept
of the output, templated bodies and commands, timeouts, and executionPolicy."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence

import pytest
from aiohttp import web

from stash.api.common import Handler
from stash.contract.hooks import (
    OUTPUT_LIMIT,
    bounded_output,
    hook_timeout,
    post_hook_decision,
    summary_data,
)
from stash.hooks import ExecTarget, PodExecError, run_hook

DATA = summary_data(
    name="s-1",
    namespace="demo",
    invoker=("stash.appscode.com", "BackupConfiguration", "web"),
    target=("apps/v1", "Deployment", "web", "demo"),
    phase="Failed",
    error="disk full",
)


class Receiver:
    """A local HTTP server that records what it got and answers `status`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], str]] = []
        self.status = 200
        self.delay = 0.0
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=f"answer {self.status}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = runner.addresses[0][1]
    yield rec
    await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def handler(**fields: object) -> Handler:
    return Handler.model_validate(fields)


async def test_http_get_2xx_succeeds_and_5xx_fails_naming_the_hook(receiver: Receiver) -> None:
    h = handler(
        httpGet={
            "port": receiver.port,
            "path": "/freeze",
            "httpHeaders": [{"name": "X-A", "value": "1"}],
        }
    )
    ok = await run_hook("preBackup", h, DATA)
    assert ok.ok and "preBackup hook (httpGet) succeeded" in ok.message
    assert receiver.requests[0][:2] == ("GET", "/freeze")
    assert receiver.requests[0][2]["X-A"] == "1"

    receiver.status = 500
    failed = await run_hook("preBackup", h, DATA)
    assert not failed.ok
    assert "preBackup hook (httpGet) failed" in failed.message
    assert f"http://127.0.0.1:{receiver.port}/freeze answered 500" in failed.message
    assert failed.output == "answer 500"
    assert failed.execution().phase == "Failed"


async def test_http_post_renders_its_body(receiver: Receiver) -> None:
    body = '{"text": "{{ .Status.Phase }} {{ .Namespace }}/{{ .Target.Name }}"}'
    h = handler(httpPost={"port": receiver.port, "path": "/hook", "body": body})
    result = await run_hook("postBackup", h, DATA)
    assert result.ok, result.message
    assert receiver.requests[0][3] == '{"text": "Failed demo/web"}'


async def test_http_post_form(receiver: Receiver) -> None:
    h = handler(httpPost={"port": receiver.port, "form": [{"key": "a", "values": ["1", "2"]}]})
    assert (await run_hook("postBackup", h, DATA)).ok
    assert receiver.requests[0][3] == "a=1&a=2"


async def test_a_hook_that_outlives_its_timeout_fails(receiver: Receiver) -> None:
    receiver.delay = 3
    h = handler(httpGet={"port": receiver.port}, timeoutSeconds=1)
    result = await run_hook("preBackup", h, DATA)
    assert not result.ok and "did not answer within 1s" in result.message


async def test_tcp_socket() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert (await run_hook("preBackup", handler(tcpSocket={"port": port}), DATA)).ok
    closed = closed_port()
    result = await run_hook("preBackup", handler(tcpSocket={"port": closed}), DATA)
    assert not result.ok
    assert f"preBackup hook (tcpSocket) failed: connecting to 127.0.0.1:{closed} failed" in (
        result.message
    )


async def test_named_ports_are_refused_with_a_reason() -> None:
    result = await run_hook("preBackup", handler(tcpSocket={"port": "http"}), DATA)
    assert not result.ok and "named ports are not supported" in result.message


class FakeExec:
    def __init__(self, code: int = 0, output: str = "", error: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str | None, list[str], float]] = []
        self.code, self.output, self.error = code, output, error

    async def run(
        self,
        namespace: str,
        pod: str,
        container: str | None,
        command: Sequence[str],
        timeout: float,
    ) -> tuple[int, str]:
        self.calls.append((namespace, pod, container, list(command), timeout))
        if self.error is not None:
            raise self.error
        return self.code, self.output


async def test_exec_runs_the_rendered_command_in_the_named_container() -> None:
    fake = FakeExec(output="flushed\n")
    h = handler(
        exec={"command": ["sh", "-c", "echo {{ .Namespace }} > /data/.frozen"]},
        containerName="db",
        timeoutSeconds=7,
    )
    result = await run_hook(
        "preBackup", h, DATA, exec_target=ExecTarget("demo", "web-0"), pod_exec=fake
    )
    assert result.ok and result.output == "flushed\n"
    assert fake.calls == [("demo", "web-0", "db", ["sh", "-c", "echo demo > /data/.frozen"], 7.0)]
    assert result.execution().output == "flushed"


async def test_exec_failures_say_why() -> None:
    target = ExecTarget("demo", "web-0", "app")
    h = handler(exec={"command": ["false"]})
    exited = await run_hook(
        "preBackup", h, DATA, exec_target=target, pod_exec=FakeExec(code=2, output="no")
    )
    assert not exited.ok and "exited with code 2" in exited.message and exited.output == "no"
    broken = FakeExec(error=PodExecError("container app not found"))
    gone = await run_hook("preBackup", h, DATA, exec_target=target, pod_exec=broken)
    assert not gone.ok and "container app not found" in gone.message
    slow = await run_hook(
        "preBackup", h, DATA, exec_target=target, pod_exec=FakeExec(error=TimeoutError())
    )
    assert not slow.ok and "did not finish within 30s" in slow.message
    missing = await run_hook("preBackup", h, DATA)
    assert not missing.ok and "pods/exec transport" in missing.message


def test_output_is_bounded_keeping_the_end() -> None:
    text = "x" * 5000 + "THE END"
    kept = bounded_output(text)
    assert len(kept) == OUTPUT_LIMIT and kept.endswith("THE END") and kept.startswith("[…]")
    assert bounded_output("  short\n") == "short"


def test_default_timeout() -> None:
    assert hook_timeout(handler(tcpSocket={"port": 1})) == 30.0
    assert hook_timeout(handler(tcpSocket={"port": 1}, timeoutSeconds=5)) == 5.0


@pytest.mark.parametrize(
    ("policy", "phase", "retry_left", "runs"),
    [
        (None, "Succeeded", 0, True),
        ("Always", "Failed", 2, True),
        ("OnSuccess", "Succeeded", 0, True),
        ("OnSuccess", "Failed", 0, False),
        ("OnFailure", "Failed", 1, True),
        ("OnFailure", "Succeeded", 0, False),
        ("OnFinalRetryFailure", "Failed", 0, True),
        ("OnFinalRetryFailure", "Failed", 1, False),
        ("OnFinalRetryFailure", "Succeeded", 0, False),
    ],
)
def test_execution_policy(policy: str | None, phase: str, retry_left: int, runs: bool) -> None:
    decision = post_hook_decision("postBackup", policy, phase, retry_left)
    assert (decision is None) == runs
    if decision is not None:
        assert decision.startswith("Skipping executing postBackup hook")
