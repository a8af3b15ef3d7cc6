"""`stash crds`: print (or write) the CustomResourceDefinitions generated from the API models.

Not for: generating them (`stash.api.crdgen`) or applying them to a cluster.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    """Add the `crds` sub-command to the `stash` parser."""
    p: argparse.ArgumentParser = sub.add_parser("crds", help="print the generated CRDs")
    p.add_argument("--out-dir", help="write one file per kind into this directory")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print every CRD as one YAML stream, or write `<group>_<plural>.yaml` files."""
    from stash.api import CRD_KINDS
    from stash.api.crdgen import crd, crds, file_name, render, render_stream

    if not args.out_dir:
        sys.stdout.write(render_stream(crds()))
        return 0
    out = Path(args.out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for info in CRD_KINDS.values():
            path = out / file_name(info)
            path.write_text(render(crd(info)), encoding="utf-8")
            print(path)
    except OSError as exc:
        print(f"stash crds: cannot write to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
