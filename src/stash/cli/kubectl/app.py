"""`kubectl-stash`'s entry point: kubectl's flags, the sub-commands, one-line errors.

What it is for: `build_parser()` (the global flags `--kubeconfig`, `--context`, `-n` as
kubectl takes them, anywhere on the line, and every command group's sub-parsers) and
`main()`, which finds the cluster as kubectl does (`stash.cli.kubeconfig`), runs the
chosen command and turns every failure into one line on stderr that says what to fix,
with a non-zero exit (2: the command line is wrong; 1: anything else).

Not for: any one command (the group modules).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from kubernetes_asyncio.client import ApiClient

from stash.cli.kubeconfig import KubeconfigError, load_client_config
from stash.cli.kubectl import (
    clone,
    debug,
    download,
    invokers,
    keys,
    meta,
    objects,
    repository,
)
from stash.cli.kubectl.access import NeedsJob
from stash.cli.kubectl.plugin import Command, Plugin, PluginError, normalize_dry_run
from stash.cli.kubectl.podjob import run_job
from stash.cli.usage import Parser
from stash.kube.client import Forbidden, Kube, KubeError, NotFound
from stash.restic import ResticError

__all__ = ["build_parser", "main"]

#: Commands that need no cluster.
_OFFLINE = frozenset({"completion"})


def _global_flags(p: argparse.ArgumentParser, *, top: bool) -> None:
    # Sub-parsers repeat them (defaults suppressed) so they work after the command too.
    default = None if top else argparse.SUPPRESS
    p.add_argument("--kubeconfig", type=Path, default=default, help="kubeconfig file")
    p.add_argument("--context", default=default, help="kubeconfig context")
    p.add_argument("-n", "--namespace", default=default, help="namespace")


def build_parser() -> Parser:
    """The `kubectl-stash` argument parser with every command registered."""
    p = Parser(prog="kubectl-stash", description="kubectl plugin for the stash operator")
    _global_flags(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for group in (invokers, repository, keys, download, objects, clone, debug, meta):
        group.register(sub)
    for leaf in _leaves(p):
        _global_flags(leaf, top=False)
    return p


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers that run a command (sub-parsers without sub-parsers of their own)."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:  # argparse keeps sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += _leaves(child) or [child]
    return found


async def _run(args: argparse.Namespace) -> int:
    run: Command = args.run
    if args.command in _OFFLINE or getattr(args, "local_repository", None):
        # No cluster needed (inside a Job: the repository is mounted, its password set).
        return await run(Plugin(None, args.namespace or "default", args))  # type: ignore[arg-type]
    resolved = await load_client_config(
        kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace
    )
    kube = Kube(ApiClient(configuration=resolved.configuration))
    plugin = Plugin(kube, resolved.namespace, args)
    try:
        return await run(plugin)
    except NeedsJob as exc:
        if not hasattr(args, "job_timeout"):
            raise PluginError(str(exc)) from None
        return await run_job(plugin, exc.repository, args.argv)
    finally:
        await kube.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run `kubectl-stash`; the exit code."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    normalize_dry_run(args)
    try:
        return asyncio.run(_run(args))
    except PluginError as exc:
        return _fail(str(exc), exc.exit_code)
    except KubeconfigError as exc:
        return _fail(f"{exc}")
    except NotFound as exc:
        return _fail(f"not found: {exc.message}")
    except Forbidden as exc:
        return _fail(f"forbidden: {exc.message} (ask for RBAC on it, or use another --context)")
    except KubeError as exc:
        return _fail(f"{exc}")
    except ResticError as exc:
        return _fail(f"restic: {exc}")
    except KeyboardInterrupt:
        return 130


def _fail(message: str, code: int = 1) -> int:
    print(f"kubectl-stash: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
