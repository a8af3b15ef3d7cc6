"""Job-model step commands: `backup-pvc`, `update-status`, `restore-pvc`.

What it is for: the step bodies and the `output.json` model passed between steps. Their
flags live in one table in `stash.contract.steps`, which both the agent's command line
and the operator's Job builder read, so the two cannot drift.

The contract (stash-api.md §5.5):

* The backup Job's Task `pvc-backup` = steps [`pvc-backup`, `update-status`]; all but
  the last step are init-containers, so they run in order in one pod and share
  `/stash-tmp` (the `stash-tmp-dir` emptyDir).
* `stash backup-pvc` finds the session's entry for its target (waiting up to
  `INITIATION_WAIT` for the operator to initiate it), takes the host's heartbeat Lease
  (`stash-hb-<session>-<host>`, see `leases`), runs the target's preBackup hook (a
  failed one is a Failed host, nothing backed up), runs `InitializeBackendRepository` when
  assigned, backs up each of `--backup-paths` (comma-separated) as its own snapshot
  with `--exclude` patterns (comma-separated) as restic host `--hostname`, and writes
  `<output-dir>/output.json`:

      {"target": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                  "name": "data", "namespace": "demo"},
       "hostBackupStats": {"hostname": "host-0", "phase": "Succeeded",
                           "duration": "3.2s", "snapshots": [...]}}

  A backup problem (missing path, wrong password, storage down, ...) is a Failed
  `hostBackupStats` with the error; the step still exits 0 so `update-status` runs.
  When the host has nothing to do (session final, host already reported) the file has
  `"skipped": "<why>"` and no stats. Only a file that cannot be written exits 1. The
  heartbeat Lease is left for `update-status`. `"resticWork"` carries what restic did
  (created the repository; packed bytes each backup added) so `update-status` takes
  the same shortcuts as the sidecar (no forget when keepLast keeps all, the size
  without `restic stats`, the integrity schedule starting at creation).
* `stash update-status` reads `output.json` (a missing file is a Failed host: the
  backup step crashed), takes over the heartbeat, runs the post-backup actions when
  this host completes the session, runs the postBackup hook (its `executionPolicy`
  judged on the host's result), writes the host's stats entry (with the `hooks` both
  steps ran, which travel in `output.json`), emits
  `HostBackupSucceeded|Failed`, pushes the host metrics, and deletes the heartbeat.
  Exit 1 only when the stats entry could not be written.
* `stash restore-pvc` restores `--snapshots` (each) or `latest` of each
  `--restore-paths` from `--source-hostname` (default `--hostname`) into
  `--target-dir` (default `/`, so the PVC must be mounted at the path it was backed
  up from) with `--include`/`--exclude`, and records the RestoreSession's host entry;
  exit 1 when the restore failed. With neither `--snapshots` nor `--restore-paths`
  the host follows the RestoreSession's rules (`stash.contract.restorerules`).

Values use the Function variables of §5.5 (`${TARGET_PATHS}`, `${BACKUP_SESSION}`,
...); the operator substitutes them when it builds the Job.

Not for: building Jobs, Tasks or Functions (the operator), or the backup itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from stash.agent.context import AgentContext, load_backup_invoker
from stash.agent.executor import BackupOutcome, HostBackup, report_host, take_backup
from stash.agent.hostbackup import failed_host
from stash.agent.leases import Heartbeat
from stash.agent.repository import AgentError, describe, open_repository
from stash.agent.restore import RestoreRequest, run_restore
from stash.agent.stats import INITIALIZATION_PENDING, Assignment, backup_assignment
from stash.api.backupsession import HostBackupStats
from stash.api.base import StashModel
from stash.api.common import TargetRef
from stash.contract.resources import BACKUPSESSIONS
from stash.contract.steps import OUTPUT_FILE
from stash.kube.client import JSON, KubeError
from stash.restic import BackupSummary, Restic

__all__ = [
    "BackupOutput",
    "run_backup_pvc",
    "run_restore_pvc",
    "run_update_status",
]

log = logging.getLogger(__name__)

INITIATION_WAIT = 120.0


class ResticWork(StashModel):
    """What the backup step's restic did to the repository, which the post-backup
    actions' shortcuts (`repofacts`) need and `update-status`'s own restic cannot know:
    whether it created the repository, and the packed bytes each backup added."""

    created_repository: bool = False
    added_packed: list[int] = []

    @classmethod
    def of(cls, restic: Restic) -> ResticWork:
        """The work recorded by `restic` (a driver of the backup step)."""
        return cls(
            created_repository=restic.created_repository,
            added_packed=[s.data_added_packed for s in restic.backed_up],
        )

    def replay(self, restic: Restic) -> None:
        """Record this work on `restic` (`update-status`'s driver), as if it had done it."""
        restic.created_repository = restic.created_repository or self.created_repository
        restic.backed_up.extend(BackupSummary(data_added_packed=n) for n in self.added_packed)


class BackupOutput(StashModel):
    """`output.json` of the backup step (module docstring)."""

    target: TargetRef
    host_backup_stats: HostBackupStats | None = None
    skipped: str | None = None
    restic_work: ResticWork | None = None

    def write(self, directory: Path) -> Path:
        """Write the file atomically (a crash never leaves half a file)."""
        directory.mkdir(parents=True, exist_ok=True)
        final = directory / OUTPUT_FILE
        tmp = directory / f".{OUTPUT_FILE}.tmp"
        tmp.write_text(json.dumps(self.to_wire(), indent=2))
        os.replace(tmp, final)
        return final

    @classmethod
    def read(cls, directory: Path) -> BackupOutput | None:
        """The file's content; None when it does not exist."""
        try:
            return cls.model_validate_json((directory / OUTPUT_FILE).read_text())
        except FileNotFoundError:
            return None


def _target_ref(ctx: AgentContext) -> TargetRef:
    version = "v1" if ctx.target.kind in ("PersistentVolumeClaim", "") else "apps/v1"
    return TargetRef(
        api_version=version,
        kind=ctx.target.kind,
        name=ctx.target.name,
        namespace=ctx.target.namespace,
    )


async def _assignment(
    ctx: AgentContext, session: str, hostname: str
) -> tuple[JSON, Assignment | str]:
    deadline = time.monotonic() + INITIATION_WAIT
    said = False
    poll = 0.1  # the operator usually initiates within a moment; then every 2 s
    while True:
        live = await ctx.kube.get(BACKUPSESSIONS, session, ctx.namespace)
        found = backup_assignment(live, ctx.target, hostname)
        waiting = isinstance(found, str) and (
            "not initiated" in found or "no entry" in found or found == INITIALIZATION_PENDING
        )
        if not waiting or time.monotonic() > deadline:
            return live, found
        if not said:
            log.info(
                "waiting (up to %.0fs) for the operator to initiate %s: %s",
                INITIATION_WAIT,
                session,
                found,
            )
            said = True
        await asyncio.sleep(poll)
        poll = min(poll * 2, 2.0)


async def run_backup_pvc(
    ctx: AgentContext,
    session: str,
    hostname: str,
    paths: Sequence[str],
    excludes: Sequence[str],
    output_dir: Path,
    perform: HostBackup | None = None,
) -> int:
    """The `backup-pvc` step (module docstring); the exit status. With `perform`, the
    same step backs up something else than paths (the database steps)."""
    out = BackupOutput(target=_target_ref(ctx))
    try:
        live, found = await _assignment(ctx, session, hostname)
        if isinstance(found, str):
            out.skipped = found
        else:
            heartbeat = Heartbeat(
                ctx.kube, live, hostname, ctx.pod.pod_name, ledger=ctx.settings.ledger
            )
            await heartbeat.start()
            try:
                invoker = await load_backup_invoker(
                    ctx.kube, ctx.invoker_kind, ctx.invoker_name, ctx.namespace, ctx.target
                )
                outcome = await take_backup(
                    ctx,
                    invoker,
                    live,
                    found,
                    hostname,
                    paths=tuple(paths),
                    excludes=tuple(excludes),
                    perform=perform,
                    heartbeat=heartbeat,
                )
                out.host_backup_stats = outcome.host
                if outcome.repo is not None:
                    out.restic_work = ResticWork.of(outcome.repo.restic)
            finally:
                await heartbeat.stop(delete=False)  # update-status takes it over
    except (AgentError, KubeError, OSError) as exc:
        out.host_backup_stats = failed_host(hostname, describe(exc))
    try:
        where = out.write(output_dir)
    except OSError as exc:
        log.error("cannot write %s: %s", output_dir / OUTPUT_FILE, exc)
        return 1
    stats = out.host_backup_stats
    log.info("wrote %s: %s", where, out.skipped or (stats.phase if stats else "?"))
    return 0


async def run_update_status(
    ctx: AgentContext, session: str, hostname: str, output_dir: Path
) -> int:
    """The `update-status` step (module docstring); the exit status."""
    output = BackupOutput.read(output_dir)
    if output is not None and output.skipped:
        log.info("the backup step did nothing: %s", output.skipped)
        return 0
    host = output.host_backup_stats if output else None
    if host is None:
        host = failed_host(
            hostname,
            f"the backup step wrote no {output_dir / OUTPUT_FILE}: it crashed or was killed "
            "before finishing; see the logs of the backup Job's first container",
        )
    hostname = host.hostname or hostname
    try:
        live, found = await _assignment(ctx, session, hostname)
        if isinstance(found, str):
            log.info("nothing to record for host %s: %s", hostname, found)
            return 0
        heartbeat = Heartbeat(
            ctx.kube, live, hostname, ctx.pod.pod_name, ledger=ctx.settings.ledger
        )
        await heartbeat.start()
        written = False
        try:
            invoker = await load_backup_invoker(
                ctx.kube, ctx.invoker_kind, ctx.invoker_name, ctx.namespace, ctx.target
            )
            repo = None
            if host.phase == "Succeeded" and found.post_actions:
                try:
                    repo = await open_repository(
                        ctx.kube,
                        invoker.repository_name,
                        invoker.repository_namespace,
                        ctx.settings,
                    )
                    if output is not None and output.restic_work is not None:
                        output.restic_work.replay(repo.restic)
                except AgentError as exc:
                    error = (
                        f"the backup succeeded but the post-backup actions could not open "
                        f"the repository: {exc}"
                    )
                    # its snapshots are in the repository: the stats keep naming them
                    host = host.model_copy(update={"phase": "Failed", "error": error})
            await report_host(ctx, invoker, live, found, BackupOutcome(host, repo))
            written = True
        finally:
            await heartbeat.stop(delete=written)
    except (AgentError, KubeError) as exc:
        log.error("could not record host %s in %s: %s", hostname, session, describe(exc))
        return 1
    return 0


async def run_restore_pvc(
    ctx: AgentContext, restore_session: str, hostname: str, request: RestoreRequest | None
) -> int:
    """The `restore-pvc` step (module docstring); the exit status. Without a `request`
    (the Job gave neither paths nor snapshots) the host follows the session's rules."""
    return await run_restore(
        ctx, restore_session, hostname=hostname, request=request, exclusive=False
    )
