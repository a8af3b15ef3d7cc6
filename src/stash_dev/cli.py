"""`stash dev up|down|demo`: the embedded default on a developer's machine.

`up` starts the local control plane in the background and writes
`.stash-dev/kubeconfig`; `down` stops it and removes its state; `demo` (what `make run`
does) runs the demo backup and restore. The `stash` command finds `register` through the
`stash.cli_plugins` entry point that dev/pyproject.toml declares, so `stash dev` exists
only where the dev tooling is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stash_dev import ControlPlaneError
from stash_dev.local import ensure_up, tear_down

DEFAULT_DIR = Path(".stash-dev")


def register(sub: Any) -> None:
    """Add the `dev` sub-command group to the `stash` parser."""
    p: argparse.ArgumentParser = sub.add_parser("dev", help="local control plane and demo")
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state directory")
    dev = p.add_subparsers(dest="dev_command", metavar="ACTION", parser_class=type(p))
    dev.required = True
    up = dev.add_parser("up", help="start the local control plane in the background")
    up.add_argument("--nodes", type=int, default=2, help="stand-in nodes (default 2)")
    up.set_defaults(handler=_up)
    dev.add_parser("down", help="stop it and remove its state").set_defaults(handler=_down)
    dev.add_parser("demo", help="demo backup and restore (make run)").set_defaults(handler=_demo)


def _up(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    try:
        cp, started = ensure_up(state_dir, nodes=args.nodes)
    except ControlPlaneError as exc:
        print(f"stash dev up: {exc}", file=sys.stderr)
        return 1
    what = "control plane up" if started else "already running"
    print(f"{what}: {cp.server}\nexport KUBECONFIG={(state_dir / 'kubeconfig').resolve()}")
    return 0


def _down(args: argparse.Namespace) -> int:
    if tear_down(args.dir):
        print("control plane stopped")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from stash_dev.demo import run_demo

    try:
        return run_demo(args.dir)
    except ControlPlaneError as exc:
        print(f"stash dev demo: {exc}", file=sys.stderr)
        return 1
