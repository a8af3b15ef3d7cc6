"""Log lines a platform team can use: every line names the object it is about.

What it is for: `log_key(key)` sets, for the current task and what it awaits, the key of
the object being worked on (the controller runner sets `<controller>/<queue key>`
around each reconcile; the agent sets its invoker, session and host), and a handler
filter copies it into every record, as kopf does. `configure()` installs one stderr
handler in one of two formats:

* `text` (the default on a terminal): `<time> <LEVEL> <logger> [<key>]: <message>`;
* `json` (the default otherwise, e.g. in a pod): one object per line with `time`
  (RFC 3339, UTC), `level`, `logger`, `message`, and `key` and `exception` when present.

The format comes from `--log-format`, else `STASH_LOG_FORMAT`, else the terminal test.

Not for: what is logged. Secrets are never passed to a logger in the first place.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TextIO

__all__ = [
    "FORMATS",
    "JsonFormatter",
    "KeyFilter",
    "TextFormatter",
    "configure",
    "current_key",
    "log_key",
    "object_key",
]

FORMATS = ("text", "json")
ENV_FORMAT = "STASH_LOG_FORMAT"

_KEY: ContextVar[str | None] = ContextVar("stash_log_key", default=None)


def current_key() -> str | None:
    """The key of the object the current task works on, if any."""
    return _KEY.get()


@contextlib.contextmanager
def log_key(key: str) -> Iterator[None]:
    """Within the block, log records of this task carry `key`."""
    token = _KEY.set(key)
    try:
        yield
    finally:
        _KEY.reset(token)


def object_key(kind: str, namespace: str | None, name: str, host: str | None = None) -> str:
    """`<kind>/<namespace>/<name>` (lower-case kind, as the controllers' keys read), with
    ` host=<host>` when an agent works for one host."""
    key = f"{kind.lower()}/{namespace}/{name}" if namespace else f"{kind.lower()}/{name}"
    return f"{key} host={host}" if host else key


class KeyFilter(logging.Filter):
    """Adds `key` to each record: the one given in `extra`, else the task's."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Never drops a record; only annotates it."""
        if getattr(record, "key", None) is None:
            record.key = _KEY.get()
        return True


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger> [<key>]: <message>` (the key part only when set)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(key_part)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record as one text line (plus the traceback lines, if any)."""
        key = getattr(record, "key", None)
        record.key_part = f" [{key}]" if key else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (module docstring); a traceback stays in one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        key = getattr(record, "key", None)
        if key:
            out["key"] = key
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


def resolve_format(flag: str | None, stream: TextIO | None = None) -> str:
    """`flag`, else `$STASH_LOG_FORMAT`, else text on a terminal and json otherwise."""
    chosen = flag or os.environ.get(ENV_FORMAT, "").strip().lower()
    if chosen:
        if chosen not in FORMATS:
            raise ValueError(f"log format {chosen!r}: choose one of {', '.join(FORMATS)}")
        return chosen
    stream = stream or sys.stderr
    return "text" if stream.isatty() else "json"


def configure(level: str = "INFO", fmt: str | None = None, stream: TextIO | None = None) -> None:
    """Send every log record (at `level` and above) to stderr in the chosen format."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.addFilter(KeyFilter())
    chosen = resolve_format(fmt, stream)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
