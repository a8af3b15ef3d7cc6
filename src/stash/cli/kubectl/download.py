"""`kubectl stash download REPO --destination DIR`: a snapshot's files on this machine.

What it is for: restoring snapshots of a repository into a local directory with restic
run here (`access.open_repository`), showing a live progress line (files and bytes
restored, percent). One snapshot (default: the latest, narrowed by `--host`) restores
into DIR, with the snapshot's absolute paths recreated below it, as `restic restore`
does; several (`--snapshots a,b`) restore into DIR/<id8> each. `--paths` restores only
those paths. On a local backend the restore runs in a Job and the files are copied here
(`downloadjob`).

Not for: restoring into a workload or PVC (`restore` creates a RestoreSession).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stash.cli.kubectl.access import NeedsJob, add_restic_flag, open_repository
from stash.cli.kubectl.downloadjob import download_in_job
from stash.cli.kubectl.plugin import Plugin, PluginError, ProgressLine
from stash.cli.kubectl.podjob import add_job_flags
from stash.restic import BackupProgress, RestoreProgress, SnapshotNotFound, format_bytes

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add `download` to the plugin's sub-parsers."""
    d = sub.add_parser("download", help="restore snapshots of a repository to a local directory")
    d.add_argument("repository")
    d.add_argument("--destination", type=Path, required=True, help="local directory")
    d.add_argument(
        "--snapshots", default="", help="snapshot IDs, comma-separated (default: latest)"
    )
    d.add_argument("--paths", default="", help="only these paths, comma-separated")
    d.add_argument("--host", help="the latest snapshot of this host")
    add_restic_flag(d)
    add_job_flags(d)
    d.set_defaults(run=download)


def _progress_text(event: BackupProgress | RestoreProgress) -> str:
    if not isinstance(event, RestoreProgress):
        return ""
    return (
        f"restoring: {event.percent_done * 100:.0f}%  files {event.files_restored}/"
        f"{event.total_files}  {format_bytes(event.bytes_restored)}/"
        f"{format_bytes(event.total_bytes)}"
    )


async def download(p: Plugin) -> int:
    """Restore the snapshots into --destination with a progress line (on a local
    backend: in a Job, the files copied here afterwards)."""
    try:
        return await _download(p)
    except NeedsJob as exc:
        return await download_in_job(p, exc.repository)


async def _download(p: Plugin) -> int:
    wanted = [s for s in p.args.snapshots.split(",") if s] or ["latest"]
    paths = [s for s in p.args.paths.split(",") if s]
    dest: Path = p.args.destination
    await asyncio.to_thread(dest.mkdir, parents=True, exist_ok=True)
    line = ProgressLine(p.err, interval=1.0)
    async with open_repository(p, p.args.repository, progress_fps=2.0) as repo:
        for snapshot in wanted:
            into = dest if len(wanted) == 1 else dest / snapshot[:8]
            try:
                summary = await repo.restic.restore(
                    str(into.resolve()),
                    snapshot,
                    host=p.args.host if snapshot == "latest" else None,
                    includes=paths,
                    on_progress=lambda e: (
                        line.update(_progress_text(e)) if _progress_text(e) else None
                    ),
                )
            except SnapshotNotFound:
                raise PluginError(
                    f"repository {repo.name} has no snapshot {snapshot}"
                    + (f" of host {p.args.host}" if p.args.host else "")
                    + ": see `kubectl stash snapshots`"
                ) from None
            line.update(
                f"restored {summary.files_restored} file(s), "
                f"{format_bytes(summary.bytes_restored)} from {snapshot} into {into}",
                final=True,
            )
    p.say(f"downloaded {len(wanted)} snapshot(s) of {repo.name} into {dest}")
    return 0
