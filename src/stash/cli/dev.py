"""`stash dev`: the embedded default (local control plane, operator, demo)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the `dev` sub-command group to the `stash` parser."""
    p: argparse.ArgumentParser = sub.add_parser("dev", help="local control plane and demo")
    p.set_defaults(handler=lambda a: 0)
