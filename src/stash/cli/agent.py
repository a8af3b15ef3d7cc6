"""What pods run: `stash run-backup`, `stash restore`, and the job steps.

Sub-commands (each also under `stash agent ...`):

* `run-backup` (`agent sidecar`) — the injected backup sidecar (§4.2 args);
* `restore` (`agent restore`) — the restore init-container `stash-init` (§4.3 args);
* `backup-pvc`, `update-status`, `restore-pvc`, `backup-pg|mysql|redis|mongo|es`, `restore-…` —
  job-model steps; their flags live in `stash.contract.steps` so the operator's Job
  builder renders exactly what is parsed here.

All use the pod's in-cluster configuration unless `--kubeconfig` is given, and read
POD_NAME, POD_NAMESPACE and NODE_NAME from the environment the injection sets.

Not for: behaviour (`stash.agent`).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from stash.cli.process import add_log_flags, run_until_signalled, setup_logging
from stash.cli.usage import UsageError
from stash.logs import log_key, object_key

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: in-cluster config)")
    add_log_flags(p)


def _workload_flags(p: argparse.ArgumentParser, default_kind: str) -> None:
    p.add_argument("--invoker-kind", default=default_kind)
    p.add_argument("--invoker-name", required=True)
    p.add_argument("--target-kind", required=True)
    p.add_argument("--target-name", required=True)
    p.add_argument("--target-namespace", default="")
    p.add_argument("--enable-cache", type=_bool, default=True)
    p.add_argument("--max-connections", type=int, default=0, help="(from the backend spec)")
    p.add_argument("--metrics-enabled", type=_bool, default=True)
    p.add_argument("--pushgateway-url", default="")
    p.add_argument("--use-kubeapiserver-fqdn-for-aks", type=_bool, default=False)
    p.add_argument("--scratch-dir", type=Path, default=Path("/stash-tmp"))
    _common(p)


def _add_commands(sub: Any, prefix: str = "") -> None:
    names = {
        "run-backup": "sidecar" if prefix else "run-backup",
        "restore": "restore",
    }
    p = sub.add_parser(names["run-backup"], help="run the backup sidecar")
    _workload_flags(p, "BackupConfiguration")
    p.set_defaults(handler=run_backup)
    p = sub.add_parser(names["restore"], help="restore this pod's host (init-container)")
    _workload_flags(p, "RestoreSession")
    p.set_defaults(handler=restore)

    from stash.contract.steps import add_step_flags

    for command, handler, text in (
        ("backup-pvc", backup_pvc, "job step: back up paths, write output.json"),
        ("update-status", update_status, "job step: record output.json in the session"),
        ("restore-pvc", restore_pvc, "job step: restore paths or snapshots"),
        ("backup-pg", backup_database, "job step: stream a PostgreSQL dump into restic"),
        ("restore-pg", restore_database, "job step: load a PostgreSQL dump from restic"),
        ("backup-mysql", backup_database, "job step: stream a MySQL/MariaDB dump into restic"),
        ("restore-mysql", restore_database, "job step: load a MySQL/MariaDB dump from restic"),
        ("backup-redis", backup_database, "job step: stream a Redis dump into restic"),
        ("restore-redis", restore_database, "job step: load a Redis dump from restic"),
        ("backup-mongo", backup_database, "job step: stream a mongodump archive into restic"),
        ("restore-mongo", restore_database, "job step: load a mongodump archive from restic"),
        ("backup-es", backup_database, "job step: stream an Elasticsearch dump into restic"),
        ("restore-es", restore_database, "job step: load an Elasticsearch dump from restic"),
    ):
        p = sub.add_parser(command, help=text)
        add_step_flags(p, command)
        _common(p)
        p.set_defaults(handler=handler, command_name=command)


def register(sub: Any) -> None:
    """Add the agent sub-commands (and the `agent` group with the same commands)."""
    _add_commands(sub)
    group: argparse.ArgumentParser = sub.add_parser("agent", help="what stash runs in pods")
    inner = group.add_subparsers(dest="agent_command", metavar="COMMAND")
    inner.required = True
    _add_commands(inner, prefix="agent")


# ------------------------------------------------------------------ running


def _run(
    args: argparse.Namespace,
    body: Callable[[Any], Awaitable[int]],
    session: tuple[str, str] | None = None,
) -> int:
    """Connect, build the AgentContext, run `body(ctx)`; SIGTERM/SIGINT cancel it.

    Log lines carry the key of `session` ((kind, name), a job step's) with its host,
    else of the invoker.
    """
    from stash.agent.context import AgentContext
    from stash.agent.identity import PodIdentity
    from stash.agent.repository import ResticSettings
    from stash.agent.stats import TargetKey
    from stash.kube.client import Kube
    from stash.kube.podexec import PodExec

    setup_logging(args)
    pod = PodIdentity.from_env()
    namespace = getattr(args, "namespace", "") or pod.namespace
    if not namespace:
        raise UsageError("no namespace: set POD_NAMESPACE or pass --namespace")
    if namespace != pod.namespace:
        pod = PodIdentity(pod.pod_name, namespace, pod.node_name)
    enable_cache = args.enable_cache
    if isinstance(enable_cache, str):
        enable_cache = _bool(enable_cache)
    scratch = Path(args.scratch_dir)
    metrics = getattr(args, "metrics_enabled", True)
    if isinstance(metrics, str):
        metrics = _bool(metrics)

    if session is not None:
        kind, name = session
        key = object_key(kind, namespace, name, args.hostname or "host-0")
    else:
        key = object_key(args.invoker_kind, namespace, args.invoker_name)

    async def main() -> int:
        with log_key(key):
            return await connected()

    async def connected() -> int:
        kube = await Kube.connect(args.kubeconfig)
        try:
            ctx = AgentContext(
                kube=kube,
                pod=pod,
                settings=ResticSettings.from_env(scratch, enable_cache),
                invoker_kind=args.invoker_kind,
                invoker_name=args.invoker_name,
                target=TargetKey(
                    args.target_kind or "",
                    args.target_name or "",
                    args.target_namespace or namespace,
                ),
                pushgateway_url=getattr(args, "pushgateway_url", "") or None,
                metrics_enabled=bool(metrics),
                pod_exec=PodExec(kube),  # exec hooks, through the apiserver's pods/exec
            )
            return await body(ctx)
        finally:
            await kube.close()

    return run_until_signalled(main, signalled_exit=143)


def run_backup(args: argparse.Namespace) -> int:
    """`stash run-backup`: watch the invoker's BackupSessions and back up this host."""
    from stash.agent.sidecar import run_sidecar

    async def body(ctx: Any) -> int:
        await run_sidecar(ctx)
        return 0

    return _run(args, body)


def restore(args: argparse.Namespace) -> int:
    """`stash restore`: restore this pod's host for the RestoreSession `--invoker-name`."""
    from stash.agent.restore import run_restore

    if args.invoker_kind not in ("RestoreSession", "RestoreBatch"):
        raise UsageError(
            f"--invoker-kind {args.invoker_kind} is not supported; use RestoreSession or "
            "RestoreBatch"
        )
    return _run(args, lambda ctx: run_restore(ctx, args.invoker_name))


def backup_pvc(args: argparse.Namespace) -> int:
    """`stash backup-pvc`: the backup step of the job model."""
    from stash.agent.steps import run_backup_pvc
    from stash.contract.steps import split_list

    if not args.backupsession:
        raise UsageError("--backupsession is required")
    return _run(
        args,
        lambda ctx: run_backup_pvc(
            ctx,
            args.backupsession,
            args.hostname or "host-0",
            split_list(args.backup_paths),
            split_list(args.exclude),
            Path(args.output_dir),
        ),
        ("BackupSession", args.backupsession),
    )


def update_status(args: argparse.Namespace) -> int:
    """`stash update-status`: record the backup step's output in the session."""
    from stash.agent.steps import run_update_status

    if not args.backupsession:
        raise UsageError("--backupsession is required")
    return _run(
        args,
        lambda ctx: run_update_status(
            ctx, args.backupsession, args.hostname or "host-0", Path(args.output_dir)
        ),
        ("BackupSession", args.backupsession),
    )


def restore_pvc(args: argparse.Namespace) -> int:
    """`stash restore-pvc`: the restore step of the job model."""
    from stash.agent.restore import RestoreRequest
    from stash.agent.steps import run_restore_pvc
    from stash.contract.steps import split_list

    if not args.restoresession:
        raise UsageError("--restoresession is required")
    if args.invoker_kind == "BackupConfiguration":
        args.invoker_kind = "RestoreSession"
    if not args.invoker_name:
        args.invoker_name = args.restoresession
    hostname = args.hostname or "host-0"
    request = RestoreRequest(
        hostname=hostname,
        source_host=args.source_hostname or hostname,
        snapshots=split_list(args.snapshots),
        paths=split_list(args.restore_paths),
        includes=split_list(args.include),
        excludes=split_list(args.exclude),
        target_dir=args.target_dir or "/",
    )
    # Neither flag: the host follows the RestoreSession's rules itself (a host no rule
    # is for restores nothing; a restore without rules fails saying so).
    chosen = None if request.nothing else request
    return _run(
        args,
        lambda ctx: run_restore_pvc(ctx, args.restoresession, hostname, chosen),
        ("RestoreSession", args.restoresession),
    )


def _database_step(args: argparse.Namespace, command: str, tool: str) -> Any:
    """The DatabaseStep of a `backup-<engine>` / `restore-<engine>` command line."""
    import os
    import shlex

    from stash.agent.dbsteps import DatabaseStep

    try:
        extra = tuple(shlex.split(args.args or ""))
        timeout = float(args.wait_timeout or 300)
    except ValueError as exc:
        raise UsageError(f"--args / --wait-timeout: {exc}") from None
    return DatabaseStep(
        engine=command.split("-", 1)[1],
        appbinding=f"{args.target_namespace or args.namespace}/{args.appbinding}",
        tool=tool,
        args=extra,
        wait_timeout=timeout,
        scratch=Path(args.scratch_dir),
        secret=os.environ.get("STASH_DB_SECRET", ""),
        options=tuple(
            (name, value)
            for name, value in (
                ("authMechanism", getattr(args, "auth_mechanism", "")),
                ("numParallelCollections", getattr(args, "parallel_collections", "")),
                ("indices", getattr(args, "indices", "")),
            )
            if value
        ),
    )


def backup_database(args: argparse.Namespace) -> int:
    """`stash backup-<engine>`: stream a database dump into the repository."""
    from stash.agent.dbsteps import run_database_backup

    if not args.backupsession:
        raise UsageError("--backupsession is required")
    step = _database_step(args, args.command_name, args.dump_tool)
    return _run(
        args,
        lambda ctx: run_database_backup(
            ctx, step, args.backupsession, args.hostname or "host-0", Path(args.output_dir)
        ),
        ("BackupSession", args.backupsession),
    )


def restore_database(args: argparse.Namespace) -> int:
    """`stash restore-<engine>`: load a dump from the repository."""
    from stash.agent.dbsteps import run_database_restore
    from stash.agent.restore import RestoreRequest
    from stash.contract.steps import split_list

    if not args.restoresession:
        raise UsageError("--restoresession is required")
    if args.invoker_kind == "BackupConfiguration":
        args.invoker_kind = "RestoreSession"
    if not args.invoker_name:
        args.invoker_name = args.restoresession
    hostname = args.hostname or "host-0"
    request = RestoreRequest(
        hostname=hostname,
        source_host=args.source_hostname or hostname,
        snapshots=split_list(args.snapshots),
    )
    step = _database_step(args, args.command_name, args.load_tool)
    return _run(
        args,
        lambda ctx: run_database_restore(ctx, step, args.restoresession, request),
        ("RestoreSession", args.restoresession),
    )
