"""The `stash` command: one sub-command per module in this package.

Not for: business logic. Each sub-command parses flags and calls library code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from stash import __version__
from stash.cli.usage import Parser, UsageError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Build the `stash` argument parser with every sub-command registered."""
    from stash.cli import agent, crds, dev, operator, webhook

    parser = Parser(prog="stash", description="Stash backup operator for Kubernetes")
    parser.add_argument("--version", action="version", version=f"stash {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in (agent, crds, dev, operator, webhook):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `stash`; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
