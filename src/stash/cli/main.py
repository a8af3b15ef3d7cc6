"""The `stash` command: one sub-command per module in this package, plus the sub-commands
other installed distributions declare in the `stash.cli_plugins` entry-point group (the
dev tooling's `stash dev`, from a source checkout's `make install`).

Not for: business logic. Each sub-command parses flags and calls library code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, NoReturn

from stash import __version__


class _Parser(argparse.ArgumentParser):
    """argparse that prints a one-line error (no usage dump, no traceback) and exits 2."""

    commands: frozenset[str] = frozenset()
    """The sub-commands registered (set by `build_parser`)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


Handler = Callable[[argparse.Namespace], int]

#: Entry-point group of sub-commands from other distributions: `name = module:register`.
PLUGIN_GROUP = "stash.cli_plugins"
#: What to say when a known plugin's command is asked for but it is not installed.
_NOT_INSTALLED = {
    "dev": "the dev tools (stash_dev) are not installed; they come with a source "
    "checkout: `make install` there",
}


def build_parser() -> _Parser:
    """Build the `stash` argument parser with every sub-command registered."""
    from stash.cli import agent, crds, operator, webhook

    parser = _Parser(prog="stash", description="Stash backup operator for Kubernetes")
    parser.add_argument("--version", action="version", version=f"stash {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (agent, crds, operator, webhook):
        module.register(sub)
    _register_plugins(sub)
    parser.commands = frozenset(sub.choices)
    return parser


def _register_plugins(sub: Any) -> None:
    """Add each installed `stash.cli_plugins` sub-command; skip one whose package is gone
    (its distribution's metadata outlived its code). Any other import error propagates."""
    for plugin in entry_points(group=PLUGIN_GROUP):
        try:
            register = plugin.load()
        except ModuleNotFoundError as exc:
            if exc.name != plugin.module.partition(".")[0]:
                raise
            continue
        register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `stash`; return the process exit code."""
    parser = build_parser()
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list and args_list[0] in _NOT_INSTALLED and args_list[0] not in parser.commands:
        print(f"stash: error: {_NOT_INSTALLED[args_list[0]]}", file=sys.stderr)
        return 2
    args = parser.parse_args(args_list)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except _UsageError as exc:
        print(f"stash: error: {exc}", file=sys.stderr)
        return 2


class _UsageError(Exception):
    """Raised by a sub-command for input the user must fix; printed as one line."""


UsageError = _UsageError


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
