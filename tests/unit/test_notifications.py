"""Operator notifications: the configuration an admin writes, delivery with retries that
never raises, what Slack, a webhook and an email receive, and when an invoker is stale."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from stash.cron import parse_schedule
from stash.notifications import (
    Notification,
    NotificationConfig,
    NotificationConfigError,
    Notifier,
    overdue_period,
)

UTC = dt.UTC


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.failures_left = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.failures_left:
            self.failures_left -= 1
            return web.Response(status=503, text="busy")
        self.bodies.append(await request.json())
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}/hook"


def notifier(config: dict[str, Any]) -> tuple[Notifier, list[float]]:
    slept: list[float] = []

    async def load() -> NotificationConfig:
        return NotificationConfig.parse(json.dumps(config))

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return Notifier(load, sleep=sleep, send_timeout=2), slept


FAILED = Notification(
    "SessionFailed",
    "BackupSession",
    "demo",
    "web-1",
    "BackupSession demo/web-1 failed",
    {"invoker": "BackupConfiguration web", "details": "host host-0: disk full"},
)


def test_config_defaults_and_errors() -> None:
    config = NotificationConfig.parse(
        "notifiers:\n- {name: s, type: slack, url: 'http://x'}\nstaleAfter: 90m\n"
        "retry: {attempts: 3, initialDelay: 500ms}"
    )
    assert config.stale_after == 5400 and config.retry.initial_delay == 0.5
    assert config.notifiers[0].wants("SessionFailed")
    assert not config.notifiers[0].wants("SessionSucceeded")
    with pytest.raises(NotificationConfigError, match="needs a url"):
        NotificationConfig.parse("notifiers: [{name: s, type: slack}]")
    with pytest.raises(NotificationConfigError, match=r"notifiers\.0\.type"):
        NotificationConfig.parse("notifiers: [{name: s, type: pager, url: x}]")
    with pytest.raises(NotificationConfigError, match="needs smtp, from and to"):
        NotificationConfig.parse("notifiers: [{name: m, type: email}]")


async def test_webhook_and_slack_bodies(receiver: Receiver) -> None:
    n, _ = notifier(
        {
            "notifiers": [
                {"name": "hook", "type": "webhook", "url": receiver.url},
                {"name": "slack", "type": "slack", "url": receiver.url},
            ]
        }
    )
    deliveries = await n.deliver(FAILED)
    assert sorted((d.notifier, d.ok) for d in deliveries) == [("hook", True), ("slack", True)]
    webhook = next(b for b in receiver.bodies if "event" in b)
    assert webhook["event"] == "SessionFailed"
    assert webhook["object"] == {"kind": "BackupSession", "namespace": "demo", "name": "web-1"}
    assert webhook["details"]["details"] == "host host-0: disk full"
    slack = next(b for b in receiver.bodies if "text" in b)
    assert "BackupSession demo/web-1 failed" in slack["text"]
    assert "disk full" in slack["text"]


async def test_a_failing_send_is_retried_with_backoff(receiver: Receiver) -> None:
    receiver.failures_left = 2
    n, slept = notifier(
        {
            "notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url}],
            "retry": {"attempts": 4, "initialDelay": "1s", "maxDelay": "10s"},
        }
    )
    (delivery,) = await n.deliver(FAILED)
    assert delivery.ok and delivery.attempts == 3
    assert len(receiver.bodies) == 1
    assert len(slept) == 2 and slept[1] > slept[0]  # backoff grows


async def test_a_notifier_that_is_down_gives_up_without_raising(receiver: Receiver) -> None:
    n, _ = notifier(
        {
            "notifiers": [
                {"name": "down", "type": "webhook", "url": closed_url()},
                {"name": "up", "type": "webhook", "url": receiver.url},
            ],
            "retry": {"attempts": 3, "initialDelay": "1s"},
        }
    )
    deliveries = {d.notifier: d for d in await n.deliver(FAILED)}
    assert deliveries["up"].ok
    assert not deliveries["down"].ok and deliveries["down"].attempts == 3
    assert "could not reach it" in deliveries["down"].error
    assert "127.0.0.1" not in deliveries["down"].error  # never the address (it may be secret)


async def test_events_filter_and_fire_and_forget(receiver: Receiver) -> None:
    n, _ = notifier({"notifiers": [{"name": "hook", "type": "webhook", "url": receiver.url}]})
    ok = Notification("SessionSucceeded", "BackupSession", "demo", "web-2", "ok")
    assert await n.deliver(ok) == []  # SessionSucceeded is opt-in
    n.notify(FAILED)
    await n.close()
    assert [b["object"]["name"] for b in receiver.bodies] == ["web-1"]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode())
        )
        return "250 OK"


async def test_email_reaches_an_smtp_server() -> None:
    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        n, _ = notifier(
            {
                "notifiers": [
                    {
                        "name": "mail",
                        "type": "email",
                        "smtp": {"host": "127.0.0.1", "port": port},
                        "from": "stash@example.com",
                        "to": ["ops@example.com"],
                    }
                ]
            }
        )
        (delivery,) = await n.deliver(FAILED)
        assert delivery.ok, delivery.error
    finally:
        await asyncio.to_thread(smtp.stop)
    ((sender, to, content),) = inbox.messages
    assert (sender, to) == ("stash@example.com", ["ops@example.com"])
    assert "Subject: [stash] BackupSession demo/web-1 failed" in content
    assert "disk full" in content


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_stale_once_the_next_fire_plus_slack_passed() -> None:
    daily = parse_schedule("0 2 * * *", "UTC")
    slack = dt.timedelta(hours=1)
    last = at("2024-05-01T02:00:05")
    assert overdue_period(daily, last, at("2024-05-02T02:59:00"), slack) is None
    first = overdue_period(daily, last, at("2024-05-02T03:00:00"), slack)
    assert first == at("2024-05-02T02:00:00")
    # the same period however often one looks; the next one a day later
    assert overdue_period(daily, last, at("2024-05-02T23:00:00"), slack) == first
    assert overdue_period(daily, last, at("2024-05-03T03:30:00"), slack) == at("2024-05-03T02:00")


def test_stale_with_every_schedules() -> None:
    every = parse_schedule("@every 1h", "UTC")
    since = at("2024-05-01T00:00:00")
    slack = dt.timedelta(minutes=10)
    assert overdue_period(every, since, at("2024-05-01T01:05:00"), slack) is None
    assert overdue_period(every, since, at("2024-05-01T01:10:00"), slack) == at("2024-05-01T01:00")
    assert overdue_period(every, since, at("2024-05-01T03:20:00"), slack) == at("2024-05-01T03:00")
