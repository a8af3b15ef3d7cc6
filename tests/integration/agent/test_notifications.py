"""Operator notifications with the real control plane, restic and storage (docs/hooks.md):
a Slack-style message reaches a local receiver when a session fails, a notifier that is
down changes nothing about a session that succeeds while its email still arrives at a
local SMTP server, and a stale invoker is reported once per period."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiosmtpd.controller import Controller

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS, REPOSITORIES
from stash.kube.client import Kube
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    backup_configuration,
    create_objects,
    deployment,
    finished,
    injected_pods,
    local_repository,
    ready_invoker,
    secret,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A local endpoint standing in for Slack / a webhook: records JSON bodies by path."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, Any]] = []
        self.base = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append((request.path, await request.json()))
        return web.Response(text="ok")

    def at(self, path: str) -> list[Any]:
        return [b for p, b in self.bodies if p == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    await runner.cleanup()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode())
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    yield box, port
    smtp.stop()


async def notifiers_secret(kube: Kube, ns: str, config: dict[str, Any]) -> None:
    body = {
        "metadata": {"name": "notifiers"},
        "stringData": {"notifiers.yaml": yaml.safe_dump(config)},
    }
    await kube.create(SECRETS, body, ns)


async def _backup_objects(
    kube: Kube, ns: str, restic_bin: str, tmp_path: Path, paths: list[str]
) -> None:
    await create_objects(
        kube,
        ns,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(tmp_path / "repo")),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, backup_configuration(restic_bin, paths=paths)),
        ],
    )
    await ready_invoker(kube, ns)


async def test_a_failed_session_reaches_slack(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    await notifiers_secret(
        rawkube,
        namespace,
        {
            "notifiers": [
                {"name": "slack", "type": "slack", "url": f"{receiver.base}/services/T/B/X"}
            ]
        },
    )
    await run_operator(notifiers_secret="notifiers")
    await _backup_objects(rawkube, namespace, restic_bin, tmp_path, ["/data/missing"])
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    (tmp_path / "data").mkdir()
    sidecar = await runner.run(pod, "stash", volumes={"data": tmp_path / "data"})
    name = await trigger(rawkube, namespace)
    session = await finished(rawkube, namespace, name, logs=[sidecar])
    assert session["status"]["phase"] == "Failed"

    async def arrived() -> list[Any] | None:
        return receiver.at("/services/T/B/X") or None

    (message,) = await eventually(arrived, timeout=30, what="the Slack message")
    text = message["text"]
    assert f"BackupSession {namespace}/{name} of BackupConfiguration bc failed" in text
    assert "path /data/missing does not exist" in text


async def test_a_notifier_that_is_down_changes_nothing_and_email_still_arrives(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    inbox: tuple[Inbox, int],
    tmp_path: Path,
) -> None:
    box, smtp_port = inbox
    events = ["SessionSucceeded", "SessionFailed"]
    await notifiers_secret(
        rawkube,
        namespace,
        {
            "notifiers": [
                {
                    "name": "down",
                    "type": "webhook",
                    "url": f"http://127.0.0.1:{free_port()}/x",
                    "events": events,
                },
                {
                    "name": "mail",
                    "type": "email",
                    "smtp": {"host": "127.0.0.1", "port": smtp_port},
                    "from": "stash@example.com",
                    "to": ["ops@example.com"],
                    "events": events,
                },
            ],
            "retry": {"attempts": 3, "initialDelay": "200ms"},
        },
    )
    await run_operator(notifiers_secret="notifiers")
    await _backup_objects(rawkube, namespace, restic_bin, tmp_path, ["/data"])
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"a.bin": os.urandom(10_000)})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    name = await trigger(rawkube, namespace)
    session = await finished(rawkube, namespace, name, logs=[sidecar])
    assert session["status"]["phase"] == "Succeeded", session["status"]

    async def mailed() -> list[str] | None:
        return box.messages or None

    (raw,) = await eventually(mailed, timeout=30, what="the email")
    mail = email.message_from_string(raw, policy=email.policy.default)
    subject = f"[stash] BackupSession {namespace}/{name} of BackupConfiguration bc succeeded"
    assert mail["Subject"] == subject
    assert mail["To"] == "ops@example.com"
    await asyncio.sleep(2)  # the down notifier's retries are over by now
    live = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
    assert live["status"]["phase"] == "Ready"
    again = await rawkube.get(BACKUPSESSIONS, name, namespace)  # untouched by the failures
    assert again["status"] == session["status"]


async def test_a_stale_invoker_is_reported_once_per_period(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    receiver: Receiver,
) -> None:
    await notifiers_secret(
        rawkube,
        namespace,
        {
            "notifiers": [
                {
                    "name": "hook",
                    "type": "webhook",
                    "url": f"{receiver.base}/stale",
                    "events": ["InvokerStale"],
                }
            ],
            "staleAfter": "1s",
        },
    )
    await run_operator(notifiers_secret="notifiers", stale_check_interval=0.5)
    # Nothing can ever back this up (its Repository does not exist): no session succeeds.
    bc = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "* * * * *",
            "repository": {"name": "missing"},
            "retentionPolicy": {"name": "keep-last-1", "keepLast": 1, "prune": True},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "paths": ["/data"],
            },
        },
    }
    await rawkube.create(BACKUPCONFIGURATIONS, bc, namespace)

    async def reported() -> list[Any] | None:
        return receiver.at("/stale") or None

    first = await eventually(reported, timeout=90, interval=0.5, what="a stale report")
    await asyncio.sleep(4)  # eight more looks within the same period
    reports = receiver.at("/stale")
    periods = [r["details"]["overduePeriod"] for r in reports]
    assert len(periods) == len(set(periods)), json.dumps(reports, indent=1)
    assert first[0]["object"] == {
        "kind": "BackupConfiguration",
        "namespace": namespace,
        "name": "nightly",
    }
    assert first[0]["event"] == "InvokerStale"
    assert "has had no successful backup since" in first[0]["summary"]
