"""`stash dev up|down|demo`: the embedded default on a developer's machine.

`up` starts the local control plane in the background and writes
`.stash-dev/kubeconfig`; `down` stops it and removes its state; `demo` (what `make run`
does) runs the demo backup and restore. Library code lives in `stash.devcluster`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from stash.devcluster import ControlPlane, ControlPlaneError

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
    if (state_dir / "state.json").exists():
        cp = ControlPlane.attach(state_dir)
        if cp.running():
            print(f"already running: {cp.server}\nexport KUBECONFIG={cp.kubeconfig.resolve()}")
            return 0
        cp.stop()
    cp = ControlPlane(state_dir / "cluster", nodes=args.nodes)
    try:
        cp.start()
    except ControlPlaneError as exc:
        print(f"stash dev up: {exc}", file=sys.stderr)
        return 1
    # The handle lives at the top of the state dir; the kubeconfig too.
    shutil.copy(cp.kubeconfig, state_dir / "kubeconfig")
    shutil.copy(cp.state_dir / "state.json", state_dir / "state.json")
    print(
        f"control plane up: {cp.server}\nexport KUBECONFIG={(state_dir / 'kubeconfig').resolve()}"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    if (state_dir / "state.json").exists():
        ControlPlane.attach(state_dir).stop()
        print("control plane stopped")
    shutil.rmtree(state_dir, ignore_errors=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    print("stash dev demo: not yet (the demo backup and restore lands with the agent issue)")
    print("meanwhile: `make cluster-up` starts the local control plane")
    return 0
