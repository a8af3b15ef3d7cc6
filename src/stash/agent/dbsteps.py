"""The database steps of the job model: `backup-<engine>` and `restore-<engine>` (§9)
for pg, mysql, redis, mongo and es.

What it is for: the bodies behind the addon Functions. Both read the database's endpoint
and credentials from the env the operator gives the Job (`contract.appbinding`), remove
the credentials from the process environment at once (no child inherits them), write
them into a 0600 file (`databases.private_dir`; Redis: the variables its tools read, in
the environment of redis-cli and of restic, which runs redis-dump-go), wait for the
database (`waitTimeout`), and then:

* backup: `restic backup --stdin-from-command -- <dump tool> ...` as the host's one
  snapshot (`dumpfile.sql|dump|resp|archive|ndjson`). restic runs the dump tool and fails the
  snapshot when it exits non-zero or is killed, and the driver drops a snapshot of an
  empty dump: a dump that dies half-way is a Failed host naming the tool's exit status,
  never a Succeeded truncated snapshot. Nothing passes through Python or a temp file.
  The rest of the step (output.json, heartbeat, update-status) is the PVC step's.
* restore: the chosen snapshot (`--snapshots`, else the latest dump of
  `--source-hostname`) is streamed by `restic dump` through an OS pipe into the load
  tool (`restic.pipe`); the host's entry is Failed with the tool's exit status and the
  end of its stderr when it fails.

Every message is stripped of the password before it is logged or recorded.

Not for: tool command lines (`databases`) or the session bookkeeping (`steps`,
`restore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from stash.agent.context import AgentContext
from stash.agent.databases import DUMP_FILES, ENGINES, Connection, Engine, private_dir
from stash.agent.hostbackup import failed_host
from stash.agent.nosql import NOSQL_ENGINES
from stash.agent.repository import AgentError, RepositoryHandle, describe, open_repository
from stash.agent.restore import RestoreRequest, run_restore
from stash.agent.stats import snapshot_stats
from stash.agent.steps import run_backup_pvc
from stash.api import RestoreSession
from stash.api.backupsession import HostBackupStats
from stash.contract.appbinding import (
    SECRET_ENV,
    TLS_ENV,
    Credentials,
    Endpoint,
    TlsMaterial,
    credentials_from_env,
    tls_from_env,
)
from stash.contract.sessions import format_duration
from stash.restic import BackupCommandFailed, Restic, ResticError

__all__ = [
    "DatabaseStep",
    "Target",
    "run_database_backup",
    "run_database_restore",
    "take_credentials",
]

log = logging.getLogger(__name__)
PROBE_INTERVAL = 1.0
#: Every engine a step can name (`backup-<key>` / `restore-<key>`).
ALL_ENGINES: dict[str, Engine] = {**ENGINES, **NOSQL_ENGINES}


@dataclass(frozen=True)
class DatabaseStep:
    """The flags of a database step."""

    engine: str
    appbinding: str
    tool: str = ""
    args: tuple[str, ...] = ()
    wait_timeout: float = 300.0
    scratch: Path = Path("/stash-tmp")
    secret: str = ""
    #: Engine options given as Task params (MongoDB: authMechanism, numParallelCollections).
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Target:
    """Where the database is and how to log in (read once from the env)."""

    endpoint: Endpoint
    creds: Credentials
    tls: TlsMaterial


def take_credentials() -> Target:
    """Read the connection env and remove the credentials from this process's env."""
    endpoint, creds = credentials_from_env(os.environ)
    tls = tls_from_env(os.environ)
    for name in (*SECRET_ENV, *TLS_ENV):
        os.environ.pop(name, None)
    return Target(endpoint, creds, tls)


class _Redactor:
    def __init__(self, creds: Credentials) -> None:
        self.secret = creds.password

    def __call__(self, text: str) -> str:
        return text.replace(self.secret, "******") if self.secret else text


def _child_env(conn: Connection, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "STASH_DB_"))}
    return {**env, **conn.env, **extra}


async def wait_for_database(
    engine: Engine,
    conn: Connection,
    tool: str,
    step: DatabaseStep,
    redact: _Redactor,
    *,
    restoring: bool = False,
) -> str | None:
    """None once a `SELECT 1` works; else why not (at once when the login is refused)."""
    argv, extra = engine.probe_argv(conn, tool, restoring=restoring)
    deadline = time.monotonic() + step.wait_timeout
    said = False
    while True:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_child_env(conn, extra),
            )
        except OSError as exc:
            return f"cannot run {argv[0]} to reach {conn.where}: {exc.strerror or exc}"
        try:
            out, err = await proc.communicate()
        except BaseException:  # the agent stops: the probe goes too, reaped before the loop
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(proc.wait())
            raise
        said_back = engine.probe_failure(
            proc.returncode or 0,
            out.decode("utf-8", "replace")[-4000:],
            err.decode("utf-8", "replace"),
        )
        if said_back is None:
            return None
        stderr = redact(said_back.strip())
        who = f" as user {conn.username!r}" if conn.username else ""
        if not engine.retryable(stderr):
            said_what = stderr or f"{argv[0]} exited {proc.returncode}"
            if not engine.refused_login(stderr):
                return (
                    f"cannot connect to {conn.where}{who} (AppBinding {step.appbinding}): "
                    f"{said_what}"
                )
            secret = f"Secret {step.secret}" if step.secret else "the AppBinding's Secret"
            return (
                f"cannot log in to {conn.where}{who} (AppBinding {step.appbinding}): "
                f"{said_what}; check the username and password in {secret} (keys username "
                "and password) and that this user may connect from the Job's pod"
            )
        if time.monotonic() > deadline:
            return (
                f"{conn.where} did not answer within {step.wait_timeout:.0f}s "
                f"(waitTimeout): {stderr}"
            )
        if not said:
            log.info("waiting up to %.0fs for %s: %s", step.wait_timeout, conn.where, stderr)
            said = True
        await asyncio.sleep(PROBE_INTERVAL)


async def _dump(
    step: DatabaseStep,
    target: Target,
    hostname: str,
    repo: RepositoryHandle,
) -> HostBackupStats:
    """Stream the dump into one snapshot (module docstring)."""
    started = time.monotonic()
    engine = ALL_ENGINES[step.engine]
    redact = _Redactor(target.creds)
    with private_dir(step.scratch) as workdir:
        try:
            conn = engine.connect(target.endpoint, target.creds, workdir, target.tls)
            conn = engine.with_step_options(conn, dict(step.options))
            argv, extra, filename = engine.dump_argv(conn, step.tool, step.args)
        except ValueError as exc:
            return failed_host(hostname, str(exc), started)
        problem = await wait_for_database(engine, conn, "", step, redact)
        if problem:
            return failed_host(hostname, problem, started)
        options = repo.restic.options
        env = {**options.extra_env, **conn.env, **extra}
        restic = Restic(repo.restic.target, dataclasses.replace(options, extra_env=env))
        tool = engine.tool_name(argv)
        log.info("dumping %s with %s into %s", conn.where, tool, repo.display)
        try:
            summary = await restic.backup_command(argv, filename=filename, host=hostname)
        except BackupCommandFailed as exc:
            return failed_host(
                hostname,
                redact(f"{tool} did not complete, so no snapshot was kept: {exc.message}"),
                started,
            )
        except ResticError as exc:
            return failed_host(hostname, redact(describe(exc)), started)
        finally:  # what the dump added is the repository's work (update-status's facts)
            repo.restic.backed_up.extend(restic.backed_up)
    if not summary.total_bytes_processed or not summary.snapshot_id:
        return failed_host(hostname, f"{tool} wrote nothing; no snapshot was kept", started)
    log.info(
        "dumped %s: %d bytes as snapshot %s",
        conn.where,
        summary.total_bytes_processed,
        summary.snapshot_id[:8],
    )
    return HostBackupStats(
        hostname=hostname,
        phase="Succeeded",
        duration=format_duration(time.monotonic() - started),
        snapshots=[snapshot_stats(f"/{filename}", summary)],
    )


async def run_database_backup(
    ctx: AgentContext, step: DatabaseStep, session: str, hostname: str, output_dir: Path
) -> int:
    """The `backup-<engine>` step; the exit status (as `backup-pvc`'s)."""
    target = take_credentials()

    async def perform(repo: RepositoryHandle) -> HostBackupStats:
        return await _dump(step, target, hostname, repo)

    return await run_backup_pvc(ctx, session, hostname, (), (), output_dir, perform=perform)


async def _snapshot(repo: RepositoryHandle, request: RestoreRequest) -> tuple[str, str] | str:
    """(id, dump path) of what to restore, or why there is none."""
    if request.snapshots:
        found = await repo.restic.snapshots(ids=request.snapshots[:1])
    else:
        found = await repo.restic.snapshots(host=request.source_host)
    dumps = [s for s in found if any(p in DUMP_FILES for p in s.paths)]
    if not dumps:
        which = request.snapshots[0] if request.snapshots else f"host {request.source_host}"
        return f"no database dump ({', '.join(DUMP_FILES)}) of {which} in {repo.display}"
    chosen = max(dumps, key=lambda s: s.time)
    return chosen.id, next(p for p in chosen.paths if p in DUMP_FILES)


async def _load(
    ctx: AgentContext,
    step: DatabaseStep,
    target: Target,
    rs: RestoreSession,
    request: RestoreRequest,
) -> str | None:
    """Stream the chosen dump into the load tool; None or the error."""
    engine = ALL_ENGINES[step.engine]
    redact = _Redactor(target.creds)
    repo_ref = rs.spec.repository if rs.spec else None
    if repo_ref is None or not repo_ref.name:
        return "the RestoreSession has no spec.repository.name"
    try:
        repo = await open_repository(
            ctx.kube, repo_ref.name, repo_ref.namespace or ctx.namespace, ctx.settings
        )
        chosen = await _snapshot(repo, request)
        if isinstance(chosen, str):
            return chosen
        snapshot, path = chosen
        with private_dir(step.scratch) as workdir:
            conn = engine.connect(target.endpoint, target.creds, workdir, target.tls)
            conn = engine.with_step_options(conn, dict(step.options))
            problem = await wait_for_database(engine, conn, step.tool, step, redact, restoring=True)
            if problem:
                return problem
            argv, extra = engine.load_argv(conn, step.tool, path, step.args)
            log.info("loading snapshot %s (%s) into %s", snapshot[:8], path, conn.where)
            done = await repo.restic.dump_into(snapshot, path, argv, env=_child_env(conn, extra))
    except ValueError as exc:
        return redact(str(exc))
    except (AgentError, ResticError) as exc:
        return redact(describe(exc))
    if done.consumer_exit != 0:
        tail = redact(done.consumer_stderr.strip()[-1500:])
        return (
            f"{engine.tool_name(argv)} exited with status {done.consumer_exit} loading snapshot "
            f"{snapshot[:8]} into {conn.where}: {tail}"
        )
    errors = [line for line in done.consumer_stderr.splitlines() if "ERROR" in line]
    if errors:
        log.warning(
            "%s reported %d error(s) while loading (usually objects that already exist): %s",
            engine.tool_name(argv),
            len(errors),
            redact(" | ".join(errors[:5])),
        )
    log.info("loaded snapshot %s into %s", snapshot[:8], conn.where)
    return None


async def run_database_restore(
    ctx: AgentContext, step: DatabaseStep, restore_session: str, request: RestoreRequest
) -> int:
    """The `restore-<engine>` step; the exit status (as `restore-pvc`'s)."""
    target = take_credentials()

    async def perform(ctx: AgentContext, rs: RestoreSession, req: RestoreRequest) -> str | None:
        return await _load(ctx, step, target, rs, req)

    return await run_restore(
        ctx,
        restore_session,
        hostname=request.hostname,
        request=request,
        exclusive=False,
        perform=perform,
    )
