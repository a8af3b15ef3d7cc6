"""`kubectl-stash` (the kubectl plugin, `kubectl stash ...`): the first sub-commands.

`trigger <name>` creates a BackupSession exactly as a schedule tick does, for the
BackupConfiguration of that name (else the BackupBatch; `backupbatch/<name>` or
`backupconfiguration/<name>` says which); `pause backup --backupconfig=<name>|
--backupbatch=<name>` / `resume backup ...` set `spec.paused` (stash-api.md §8).
Cluster, context and namespace are found as kubectl finds them (`stash.cli.kubeconfig`):
`--kubeconfig`, else the merged `$KUBECONFIG` list, else `~/.kube/config`, else
in-cluster settings; `--context`; `-n`, else the context's namespace. The other
sub-commands of §8 come with the kubectl plugin issue; asking for one says so.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio.client import ApiClient

from stash.cli.kubeconfig import KubeconfigError, load_client_config
from stash.cli.usage import Parser
from stash.contract.resources import BACKUPBATCHES, BACKUPCONFIGURATIONS
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
    t = sub.add_parser(
        "trigger", help="create a BackupSession for a BackupConfiguration or BackupBatch now"
    )
    t.add_argument("name", help="<name>, backupconfiguration/<name> or backupbatch/<name>")
    for verb in ("pause", "resume"):
        v = sub.add_parser(verb, help=f"{verb} scheduled backups of an invoker")
        v.add_argument("what", choices=["backup"])
        which = v.add_mutually_exclusive_group(required=True)
        which.add_argument("--backupconfig", help="a BackupConfiguration")
        which.add_argument("--backupbatch", help="a BackupBatch")
    for name in PLANNED:
        sub.add_parser(name, help="(not available yet)", add_help=False).add_argument(
            "rest", nargs=argparse.REMAINDER
        )
    return p


_KINDS = {
    "backupconfiguration": BACKUPCONFIGURATIONS,
    "backupconfigurations": BACKUPCONFIGURATIONS,
    "bc": BACKUPCONFIGURATIONS,
    "backupbatch": BACKUPBATCHES,
    "backupbatches": BACKUPBATCHES,
}


async def backup_invoker_named(kube: Kube, text: str, ns: str) -> dict[str, Any]:
    """`<name>` (a BackupConfiguration, else a BackupBatch) or `<kind>/<name>`."""
    kind, _, name = text.rpartition("/")
    if kind and kind.lower() not in _KINDS:
        raise NotFound(404, "NotFound", f"{kind} is not backupconfiguration or backupbatch")
    candidates = [_KINDS[kind.lower()]] if kind else [BACKUPCONFIGURATIONS, BACKUPBATCHES]
    for res in candidates:
        try:
            obj = await kube.get(res, name, ns)
        except NotFound:
            continue
        return {**obj, "kind": res.kind}
    what = " or ".join(r.kind for r in candidates)
    raise NotFound(404, "NotFound", f'no {what} "{name}" in namespace {ns}')


async def _run(args: argparse.Namespace) -> int:
    resolved = await load_client_config(
        kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace
    )
    ns = resolved.namespace
    kube = Kube(ApiClient(configuration=resolved.configuration))
    try:
        if args.command == "trigger":
            invoker = await backup_invoker_named(kube, args.name, ns)
            name = await create_backup_session(kube, invoker, dt.datetime.now(dt.UTC))
            print(f"BackupSession {ns}/{name} created")
            return 0
        paused = args.command == "pause"
        res = BACKUPBATCHES if args.backupbatch else BACKUPCONFIGURATIONS
        target = args.backupbatch or args.backupconfig
        await kube.patch(res, target, {"spec": {"paused": paused}}, ns)
        print(f"{res.kind} {ns}/{target} {'paused' if paused else 'resumed'}")
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
