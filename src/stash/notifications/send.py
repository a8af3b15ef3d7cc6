"""Sending one notification to one notifier: a JSON webhook, a Slack incoming webhook, or
an email over SMTP.

What it is for: `Notification`, what happened (an event of `config.EVENTS`, the object
it is about, a one-line summary and details), and `send(spec, notification, timeout)`,
which delivers it once and raises `SendFailed` with a reason a person can act on (the
dispatcher retries). The webhook gets the notification as JSON (`Notification.payload`);
Slack gets `{"text": ...}` in its mrkdwn; email gets a plain-text message whose subject is
the summary.

Never logs or returns a notifier's URL or credentials: Slack and webhook URLs carry
secrets, so failures name the notifier, not its address.

Not for: retries, choosing notifiers (`dispatch`), or deciding what to notify.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiohttp

from stash.notifications.config import EventKind, NotifierSpec

__all__ = ["Notification", "SendFailed", "send"]


class SendFailed(Exception):
    """A send that did not go through; the message says why (never the address)."""


@dataclass(frozen=True)
class Notification:
    """One thing worth telling someone about."""

    event: EventKind
    kind: str  # the object: BackupSession, RestoreSession, BackupConfiguration, Repository
    namespace: str
    name: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def payload(self) -> dict[str, Any]:
        """The JSON a generic webhook receives."""
        return {
            "event": self.event,
            "object": {"kind": self.kind, "namespace": self.namespace, "name": self.name},
            "summary": self.summary,
            "details": self.details,
            "time": self.time.isoformat().replace("+00:00", "Z"),
        }

    def text(self) -> str:
        """A short plain-text rendering (Slack, email body)."""
        lines = [f"[stash] {self.summary}", f"{self.kind} {self.namespace}/{self.name}"]
        lines += [f"{k}: {v}" for k, v in self.details.items() if v not in (None, "")]
        return "\n".join(lines)


async def _post(spec: NotifierSpec, body: dict[str, Any], timeout: float) -> None:
    assert spec.url is not None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.post(spec.url, json=body, headers=spec.headers) as response,
        ):
            if response.status >= 300:
                text = (await response.content.read(300)).decode("utf-8", "replace")
                raise SendFailed(f"answered {response.status} {response.reason or ''}: {text}")
    except TimeoutError:
        raise SendFailed(f"no answer within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise SendFailed(f"{type(exc).__name__}: could not reach it") from None


def _slack_body(n: Notification) -> dict[str, Any]:
    icon = {"SessionSucceeded": ":white_check_mark:"}.get(n.event, ":warning:")
    details = "\n".join(f"*{k}*: {v}" for k, v in n.details.items() if v not in (None, ""))
    text = f"{icon} *{n.summary}*\n`{n.kind} {n.namespace}/{n.name}`"
    return {"text": text + (f"\n{details}" if details else "")}


def _mail(spec: NotifierSpec, n: Notification, timeout: float) -> None:
    smtp = spec.smtp
    assert smtp is not None and spec.sender is not None
    message = EmailMessage()
    message["Subject"] = f"[stash] {n.summary}"
    message["From"] = spec.sender
    message["To"] = ", ".join(spec.to)
    message.set_content(n.text() + "\n")
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if smtp.tls:
        client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=timeout)
    with client:
        if smtp.start_tls:
            client.starttls(context=context)
        if smtp.username:
            client.login(smtp.username, smtp.password or "")
        client.send_message(message)


async def send(spec: NotifierSpec, notification: Notification, timeout: float = 10.0) -> None:
    """Deliver `notification` through `spec` once; `SendFailed` when it did not arrive."""
    if spec.type == "webhook":
        await _post(spec, notification.payload(), timeout)
    elif spec.type == "slack":
        await _post(spec, _slack_body(notification), timeout)
    else:
        try:
            await asyncio.wait_for(
                asyncio.to_thread(_mail, spec, notification, timeout), timeout + 5
            )
        except TimeoutError:
            raise SendFailed(f"the SMTP server did not answer within {timeout:g}s") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(f"SMTP: {type(exc).__name__}: {exc}") from None
