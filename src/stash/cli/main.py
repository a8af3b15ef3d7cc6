"""The `stash` command: one sub-command per module in this package, plus the sub-commands
other installed distributions declare in the `stash.cli_plugins` entry-point group (the
dev tooling's `stash dev`, from a source checkout's `make install`).

Not for: business logic. Each sub-command parses flags and calls library code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from stash import __version__
from stash.cli.usage import Parser, UsageError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoints

Handler = Callable[[argparse.Namespace], int]

#: Entry-point group of sub-commands from other distributions: `name = module:register`.
PLUGIN_GROUP = "stash.cli_plugins"
#: What to say when a known plugin's command is asked for but it is not installed.
_NOT_INSTALLED = {
    "dev": "the dev tools (stash_dev) are not installed; they come with a source "
    "checkout: `make install` there",
}


def build_parser(command: str | None = None) -> Parser:
    """Build the `stash` argument parser with every sub-command registered.

    With `command` (the first word of the command line), plugins are loaded only when
    it is not a built-in command: a pod's `stash restore` does not import the dev
    tooling (which costs a second of start-up where it is installed).
    """
    from stash.cli import agent, crds, operator, webhook

    parser = Parser(prog="stash", description="Stash backup operator for Kubernetes")
    parser.add_argument("--version", action="version", version=f"stash {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in (agent, crds, operator, webhook):
        module.register(sub)
    if command is None or command not in sub.choices:
        _register_plugins(sub)
    return parser


def entry_points(group: str) -> EntryPoints:
    """The installed entry points of `group` (importlib.metadata, imported only here:
    it costs a pod's start-up and only plugins need it)."""
    from importlib.metadata import entry_points as installed

    return installed(group=group)


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


def _commands(parser: argparse.ArgumentParser) -> frozenset[str]:
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return frozenset(action.choices)
    return frozenset()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `stash`; return the process exit code."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(args_list[0] if args_list else None)
    if args_list and args_list[0] in _NOT_INSTALLED and args_list[0] not in _commands(parser):
        print(f"stash: error: {_NOT_INSTALLED[args_list[0]]}", file=sys.stderr)
        return 2
    args = parser.parse_args(args_list)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        print(f"stash: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
