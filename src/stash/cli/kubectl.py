"""`kubectl-stash` (the kubectl plugin, `kubectl stash ...`): the first sub-commands.

`trigger <backupconfiguration>` creates a BackupSession exactly as a schedule tick does;
`pause backup --backupconfig=<name>` / `resume backup --backupconfig=<name>` set
`spec.paused` (stash-api.md §8). Cluster, context and namespace are found as kubectl
finds them (`stash.cli.kubeconfig`): `--kubeconfig`, else the merged `$KUBECONFIG`
list, else `~/.kube/config`, else in-cluster settings; `--context`; `-n`, else the
context's namespace. The other sub-commands of §8 come with the kubectl plugin issue;
asking for one says so.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from kubernetes_asyncio.client import ApiClient

from stash.cli.kubeconfig import KubeconfigError, load_client_config
from stash.cli.usage import Parser
from stash.contract.resources import BACKUPCONFIGURATIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import Kube, KubeError, NotFound

PLANNED = (
    "cp", "create", "delete", "download", "unlock", "check", "rebuild-index", "prune",
    "migrate", "key", "clone", "debug", "gen", "purge-repos",
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="kubectl-stash", description="kubectl plugin for the stash operator")
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: as kubectl)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")
    p.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    t = sub.add_parser("trigger", help="create a BackupSession for a BackupConfiguration now")
    t.add_argument("name")
    for verb in ("pause", "resume"):
        v = sub.add_parser(verb, help=f"{verb} scheduled backups of a BackupConfiguration")
        v.add_argument("what", choices=["backup"])
        v.add_argument("--backupconfig", required=True)
    for name in PLANNED:
        sub.add_parser(name, help="(not available yet)", add_help=False).add_argument(
            "rest", nargs=argparse.REMAINDER
        )
    return p


async def _run(args: argparse.Namespace) -> int:
    resolved = await load_client_config(
        kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace
    )
    ns = resolved.namespace
    kube = Kube(ApiClient(configuration=resolved.configuration))
    try:
        if args.command == "trigger":
            bc = await kube.get(BACKUPCONFIGURATIONS, args.name, ns)
            name = await create_backup_session(kube, bc, dt.datetime.now(dt.UTC))
            print(f"BackupSession {ns}/{name} created")
            return 0
        paused = args.command == "pause"
        await kube.patch(BACKUPCONFIGURATIONS, args.backupconfig, {"spec": {"paused": paused}}, ns)
        print(f"BackupConfiguration {ns}/{args.backupconfig} {'paused' if paused else 'resumed'}")
        return 0
    finally:
        await kube.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `kubectl-stash`; the exit code."""
    args = _parser().parse_args(argv)
    if args.command in PLANNED:
        print(
            f"kubectl-stash: '{args.command}' is not available yet (it comes with the kubectl "
            "plugin work); available now: trigger, pause backup, resume backup",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(_run(args))
    except KubeconfigError as exc:
        print(f"kubectl-stash: {exc}", file=sys.stderr)
        return 1
    except NotFound as exc:
        print(f"kubectl-stash: not found: {exc.message}", file=sys.stderr)
        return 1
    except KubeError as exc:
        print(f"kubectl-stash: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
