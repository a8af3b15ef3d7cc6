"""Leak reports at the end of a bench or of the demo: what asyncio and aiohttp print when
a process ends with a client session, a connector or a task still open.

What it is for: `LeakWatch`, a context manager a bench (or `stash dev demo`) wraps its
`asyncio.run` in. Inside it, this process's own reports are collected as they are made:
the `asyncio` logger's records ("Unclosed client session", "Unclosed connector", "Task
was destroyed but it is pending!"), ResourceWarnings with those messages, and exceptions
ignored in `__del__` ("Event loop is closed"), without changing what is printed. The
logs of the processes the bench started (the operator, an agent container, the stand-in
kubelet) are scanned for the same markers with `scan_file` / `scan_logs` once those
processes have stopped, since they print the reports only on their way out; a child
whose stderr is a pipe is followed with `follow` (its lines still reach this process's
stderr). `verdict()` prints every report found and returns the exit status the bench
should end with.

Not for: finding where a leak comes from (run the process with `python -X dev` and
`PYTHONTRACEMALLOC=20` for that), or reports a process makes after it was killed with
SIGKILL (it makes none: stop processes with SIGTERM so their `finally` blocks run).
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import warnings
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TextIO

__all__ = ["LEAK_MARKERS", "LeakWatch", "leak_lines"]

#: What a process prints when it ends with an aiohttp session, a connector or an asyncio
#: task still open, or when a transport is collected after its loop closed.
LEAK_MARKERS = (
    "Unclosed client session",
    "Unclosed connector",
    "Task was destroyed but it is pending",
    "Event loop is closed",
)


def leak_lines(text: str) -> list[str]:
    """The lines of `text` that carry one of LEAK_MARKERS."""
    return [line.strip() for line in text.splitlines() if any(m in line for m in LEAK_MARKERS)]


class _AsyncioRecords(logging.Filter):
    """Notes the `asyncio` logger's leak reports; lets every record through."""

    def __init__(self, watch: LeakWatch) -> None:
        super().__init__()
        self.watch = watch

    def filter(self, record: logging.LogRecord) -> bool:
        self.watch.scan("this process (asyncio)", record.getMessage())
        return True


class LeakWatch:
    """Leak reports of this process and of the logs of the processes it started."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []
        self._filter = _AsyncioRecords(self)
        self._warnings: Any = None
        self._old_showwarning: Any = None
        self._old_unraisablehook: Any = None
        self._followers: list[threading.Thread] = []

    def __enter__(self) -> LeakWatch:
        logging.getLogger("asyncio").addFilter(self._filter)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("always", category=ResourceWarning)
        self._old_showwarning = warnings.showwarning
        warnings.showwarning = self._showwarning
        self._old_unraisablehook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        gc.collect()  # what is left unreferenced reports itself now, while we listen
        sys.unraisablehook = self._old_unraisablehook
        warnings.showwarning = self._old_showwarning
        self._warnings.__exit__(exc_type, exc, tb)
        logging.getLogger("asyncio").removeFilter(self._filter)

    def _showwarning(
        self,
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = str(message)
        if leak_lines(text):
            self.scan("this process (warning)", text)
            print(f"{filename}:{lineno}: {category.__name__}: {text}", file=sys.stderr)
        elif not issubclass(category, ResourceWarning):  # ignored by default: still ignored
            self._old_showwarning(message, category, filename, lineno, file, line)

    def _unraisable(self, unraisable: Any) -> None:
        self.scan("this process (ignored exception)", str(unraisable.exc_value))
        self._old_unraisablehook(unraisable)

    def scan(self, where: str, text: str) -> None:
        """Note the leak reports in `text`, which came from `where`."""
        for line in leak_lines(text):
            if (where, line) not in self.found:
                self.found.append((where, line))

    def scan_file(self, where: str, path: Path) -> None:
        """Note the leak reports in the log at `path` (absent: nothing to note)."""
        if path.is_file():
            self.scan(where, path.read_text(errors="replace"))

    def scan_logs(self, where: str, directory: Path) -> None:
        """Note the leak reports in every `*.log` under `directory` (a bench's work
        directory: its pods' container logs, the control plane's component logs)."""
        for path in sorted(directory.rglob("*.log")):
            self.scan(f"{where} {path.relative_to(directory)}", path.read_text(errors="replace"))

    def follow(self, where: str, stream: IO[bytes] | None) -> None:
        """Copy a child's output pipe to this process's stderr line by line, noting its
        leak reports, until the child closes it (`verdict` waits for that)."""
        if stream is None:
            return

        def copy() -> None:
            for raw in stream:
                line = raw.decode(errors="replace")
                sys.stderr.write(line)
                self.scan(where, line)

        thread = threading.Thread(target=copy, name=f"follow {where}", daemon=True)
        thread.start()
        self._followers.append(thread)

    def verdict(self, stream: TextIO | None = None) -> int:
        """Print what was found (a `leak_reports: N` line, on stdout unless `stream`);
        0 when nothing was, else 1. Waits up to 10 s for followed pipes to close."""
        for thread in self._followers:
            thread.join(timeout=10)
        out = stream or sys.stdout
        if not self.found:
            print("leak_reports: 0", file=out)
            return 0
        print(f"leak_reports: {len(self.found)} (see below)", file=out)
        for where, line in self.found:
            print(f"  {where}: {line[:300]}", file=out)
        return 1
