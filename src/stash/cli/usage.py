"""How a command tells its user that the input is wrong: one line, no traceback.

What it is for: `Parser` (argparse that prints a one-line error and exits 2) and
`UsageError` (raised by a sub-command; `stash` prints it as one line and exits 2), shared
by `stash` and `kubectl-stash` without the sub-command modules importing `cli.main`.

Not for: running commands (`cli.main`, `cli.process`).
"""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["Parser", "UsageError"]


class Parser(argparse.ArgumentParser):
    """argparse that prints a one-line error (no usage dump, no traceback) and exits 2."""

    def error(self, message: str) -> NoReturn:
        """Print `message` with a pointer to --help and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class UsageError(Exception):
    """Raised by a sub-command for input the user must fix; printed as one line."""
