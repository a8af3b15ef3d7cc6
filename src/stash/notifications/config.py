"""What the operator's notifiers are: the `notifiers.yaml` key of a Secret (docs/hooks.md).

What it is for: `NotificationConfig.parse(text)` reads the YAML an admin writes (by hand
or through the chart's `notifications.config` value):

    notifiers:
    - name: ops-slack
      type: slack                  # slack | webhook | email
      url: https://hooks.slack.com/services/T000/B000/XXXX
      events: [SessionFailed, InvokerStale, RepositoryIntegrityFailed]
    - name: pager
      type: webhook                # POSTs the notification as JSON
      url: https://alerts.example.com/stash
      headers: {Authorization: "Bearer ..."}
    - name: mail
      type: email
      smtp: {host: smtp.example.com, port: 587, startTLS: true, username: u, password: p}
      from: stash@example.com
      to: [ops@example.com]
    staleAfter: 1h                 # the slack added to an invoker's schedule period
    retry: {attempts: 5, initialDelay: 2s, maxDelay: 60s}

`events` defaults to every event but `SessionSucceeded`. Not for: sending (`send`) or
when to send (`dispatch`, the operator).
"""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stash.validation.scalars import parse_duration

__all__ = [
    "EVENTS",
    "EventKind",
    "NotificationConfig",
    "NotificationConfigError",
    "NotifierSpec",
    "RetrySpec",
    "SmtpSpec",
]

EventKind = Literal[
    "SessionFailed", "SessionSucceeded", "InvokerStale", "RepositoryIntegrityFailed"
]
EVENTS: tuple[EventKind, ...] = (
    "SessionFailed",
    "SessionSucceeded",
    "InvokerStale",
    "RepositoryIntegrityFailed",
)
_DEFAULT_EVENTS: list[EventKind] = ["SessionFailed", "InvokerStale", "RepositoryIntegrityFailed"]


class NotificationConfigError(ValueError):
    """The notifiers' configuration does not parse; the message names the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _seconds(value: object) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return parse_duration(str(value))


class SmtpSpec(_Model):
    """An SMTP server: plain, STARTTLS (`startTLS`) or TLS from the start (`tls`)."""

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    start_tls: bool = Field(default=False, alias="startTLS")
    tls: bool = False


class NotifierSpec(_Model):
    """One notifier: where it sends and which events it wants."""

    name: str
    type: Literal["webhook", "slack", "email"]
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    events: list[EventKind] = Field(default_factory=lambda: list(_DEFAULT_EVENTS))
    smtp: SmtpSpec | None = None
    sender: str | None = Field(default=None, alias="from")
    to: list[str] = Field(default_factory=list)

    def wants(self, event: str) -> bool:
        """Whether this notifier is sent `event`."""
        return event in self.events


class RetrySpec(_Model):
    """How often and how patiently a failed send is retried (exponential backoff)."""

    attempts: int = Field(default=5, ge=1, le=20)
    initial_delay: float = Field(default=2.0, alias="initialDelay")
    max_delay: float = Field(default=60.0, alias="maxDelay")

    @field_validator("initial_delay", "max_delay", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return _seconds(value)


class NotificationConfig(_Model):
    """Every notifier, the stale-invoker slack and the retry policy."""

    notifiers: list[NotifierSpec] = Field(default_factory=list)
    stale_after: float = Field(default=3600.0, alias="staleAfter")
    retry: RetrySpec = Field(default_factory=RetrySpec)

    @field_validator("stale_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        return _seconds(value)

    @classmethod
    def parse(cls, text: str) -> NotificationConfig:
        """The configuration in `text` (YAML or JSON); `NotificationConfigError` if bad."""
        try:
            data = yaml.safe_load(text) or {}
            config = cls.model_validate(data)
        except (yaml.YAMLError, ValidationError, ValueError) as exc:
            raise NotificationConfigError(f"notifiers.yaml: {_first_error(exc)}") from None
        for n in config.notifiers:
            if n.type in ("webhook", "slack") and not n.url:
                raise NotificationConfigError(f"notifier {n.name}: type {n.type} needs a url")
            if n.type == "email" and (n.smtp is None or not n.sender or not n.to):
                raise NotificationConfigError(
                    f"notifier {n.name}: type email needs smtp, from and to"
                )
        return config


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return f"{where}: {err['msg']}"
    return str(exc)
