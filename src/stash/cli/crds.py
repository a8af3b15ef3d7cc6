"""`stash crds`: print (or write) the CustomResourceDefinitions generated from the API models."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the `crds` sub-command to the `stash` parser."""
    p: argparse.ArgumentParser = sub.add_parser("crds", help="print the generated CRDs")
    p.add_argument("--out-dir", help="write one file per kind into this directory")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Not implemented yet (placeholder until the API models land)."""
    raise SystemExit("stash crds: not yet")
