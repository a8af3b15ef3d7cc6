"""What every `kubectl stash` command shares: its context, errors, output and progress.

What it is for: `Plugin` (the API client, the namespace, the parsed flags and the output
streams one command runs with), `PluginError` (a failure the user can fix, printed as one
line with a non-zero exit), `emit()` (`-o json|yaml`), `table()` (kubectl-style columns),
`ProgressLine` (a live status line on stderr: rewritten in place on a terminal, one line
per change otherwise) and `Command`, the signature of a sub-command's runner.

Not for: finding the cluster (`stash.cli.kubeconfig`) or any one command's work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import yaml

from stash.kube.client import Kube

__all__ = [
    "OUTPUTS",
    "Command",
    "Plugin",
    "PluginError",
    "ProgressLine",
    "add_dry_run",
    "add_output",
    "emit",
    "table",
]

#: The `-o` formats a listing command takes ("" is the table).
OUTPUTS = ("", "json", "yaml", "wide")


class PluginError(Exception):
    """A failure the user can act on; the message says what to fix (one line)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Plugin:
    """One command's context: where it acts, with which flags, printing where."""

    kube: Kube
    namespace: str
    args: argparse.Namespace
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    @property
    def dry_run(self) -> bool:
        """`--dry-run` was given: report what would change, change nothing."""
        return bool(getattr(self.args, "dry_run", False))

    @property
    def output(self) -> str:
        """The `-o` format ("" for the default table)."""
        return str(getattr(self.args, "output", "") or "")

    def say(self, text: str) -> None:
        """Print one line of the command's result on stdout."""
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        """Print one line of commentary (progress, what a dry run would do) on stderr."""
        print(text, file=self.err, flush=True)


Command = Callable[[Plugin], Awaitable[int]]
"""A sub-command's runner: does its work with the plugin context, returns the exit code."""


def add_output(parser: argparse.ArgumentParser) -> None:
    """Add kubectl's `-o/--output` (json, yaml; default: a table)."""
    parser.add_argument(
        "-o", "--output", choices=OUTPUTS, default="", help="json, yaml or wide (default: table)"
    )


def add_dry_run(parser: argparse.ArgumentParser) -> None:
    """Add `--dry-run`: print what would change and change nothing."""
    parser.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        default=None,
        choices=["client", "none"],
        help="only print what would be done",
    )


def _dry(value: object) -> bool:
    return value not in (None, "none")


def normalize_dry_run(args: argparse.Namespace) -> None:
    """`--dry-run=none` means no dry run (as kubectl)."""
    if hasattr(args, "dry_run"):
        args.dry_run = _dry(args.dry_run)


def emit(plugin: Plugin, data: Any) -> None:
    """Print `data` as JSON or YAML according to `-o`."""
    if plugin.output == "json":
        plugin.say(json.dumps(data, indent=2, default=str))
    else:
        plugin.say(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip())


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """kubectl's plain table: upper-case headers, columns padded by three spaces."""
    cells = [[h.upper() for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None or value == "":
        return "<none>"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "<none>"
    return str(value)


class ProgressLine:
    """A live status line on stderr: redrawn in place on a terminal, else printed on change
    (at most once per `interval` seconds, and always for the final line)."""

    def __init__(self, stream: TextIO, interval: float = 2.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval
        self._last = ""
        self._when = 0.0
        self._width = 0

    def _due(self, now: float) -> bool:
        return now - self._when >= self.interval

    def update(self, text: str, *, final: bool = False, state: str | None = None) -> None:
        """Show `text` as the current status. Off a terminal, a line whose `state` (the
        text without its clock) changed is printed at once, else at most every interval."""
        now = time.monotonic()
        key = text if state is None else state
        if self.tty:
            pad = " " * max(self._width - len(text), 0)
            self.stream.write(f"\r{text}{pad}" + ("\n" if final else ""))
            self._width = len(text)
        elif final or (key != self._last and (state is not None or self._due(now))):
            self.stream.write(text + "\n")
        else:
            return
        self._when = now
        self._last = key
        self.stream.flush()
