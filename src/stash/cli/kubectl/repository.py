"""`kubectl stash snapshots | delete snapshot | unlock | check`: a repository's data.

What it is for: `snapshots REPO` lists the repository's snapshots (a table, or `-o
json|yaml` as Snapshot objects named `<repo>-<id8>`, stash-api.md §11); `delete snapshot
<repo>-<id8>` forgets one snapshot and prunes its data; `unlock REPO` removes the locks
no restic holds any more (older than `--min-age`, which a live lock never is since restic
refreshes it every 5 minutes, and not held by a running restic on this machine) and
refuses, naming them, while live locks remain (`--remove-all` removes every lock: the
person's explicit decision); `check REPO` runs `restic check`. Each runs restic here
(`access.open_repository`).

Not for: keys (`keys`), downloads (`download`).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from stash.cli.kubectl.access import add_restic_flag, open_repository
from stash.cli.kubectl.plugin import Plugin, PluginError, add_dry_run, add_output, emit, table
from stash.cli.kubectl.podjob import add_job_flags
from stash.restic import ResticError, remove_stale_locks
from stash.snapshotapi import snapshot_object

__all__ = ["register"]

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def register(sub: Any) -> None:
    """Add snapshots, delete, unlock and check to the plugin's sub-parsers."""
    s = sub.add_parser("snapshots", help="list a repository's snapshots")
    s.add_argument("repository")
    s.add_argument("--host", help="only this host's snapshots")
    add_output(s)
    add_restic_flag(s)
    add_job_flags(s)
    s.set_defaults(run=snapshots)
    d = sub.add_parser("delete", help="delete a snapshot (restic forget --prune)")
    d.add_argument("what", choices=["snapshot"])
    d.add_argument("name", help="<repository>-<first 8 characters of the snapshot ID>")
    add_dry_run(d)
    add_restic_flag(d)
    add_job_flags(d)
    d.set_defaults(run=delete_snapshot)
    u = sub.add_parser("unlock", help="remove a repository's stale locks")
    u.add_argument("repository")
    u.add_argument(
        "--min-age", default="10m", help="a lock this old is not refreshed: stale (default 10m)"
    )
    u.add_argument("--remove-all", action="store_true", help="remove every lock, live ones too")
    add_dry_run(u)
    add_restic_flag(u)
    add_job_flags(u)
    u.set_defaults(run=unlock)
    c = sub.add_parser("check", help="check a repository's integrity (restic check)")
    c.add_argument("repository")
    c.add_argument("--read-data-subset", help="also read this part of the data (e.g. 10%%, 1/5)")
    add_restic_flag(c)
    add_job_flags(c)
    c.set_defaults(run=check)


async def snapshots(p: Plugin) -> int:
    """List the repository's snapshots, oldest first."""
    async with open_repository(p, p.args.repository) as repo:
        found = await repo.restic.snapshots(host=p.args.host, no_lock=True)
    if p.output in ("json", "yaml"):
        items = [snapshot_object(repo.name, repo.namespace, s) for s in found]
        emit(p, {"apiVersion": "v1", "kind": "List", "items": items})
        return 0
    rows = [
        [f"{repo.name}-{s.id[:8]}", s.id[:8], s.hostname, s.paths, _when(s.time)] for s in found
    ]
    if p.output == "wide":
        rows = [[*r, s.tags, s.id] for r, s in zip(rows, found, strict=True)]
        p.say(table(["name", "id", "hostname", "paths", "created", "tags", "full id"], rows))
    else:
        p.say(table(["name", "id", "hostname", "paths", "created"], rows))
    return 0


def _when(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_snapshot_name(name: str) -> tuple[str, str]:
    """`<repository>-<id8>` -> (repository, id8); the last `-` part must be 8 hex digits."""
    repo, _, short = name.rpartition("-")
    if not repo or not re.fullmatch(r"[0-9a-f]{8}", short):
        raise PluginError(
            f'"{name}" is not a snapshot name: use <repository>-<first 8 characters of the ID> '
            "(see `kubectl stash snapshots <repository>`)"
        )
    return repo, short


async def delete_snapshot(p: Plugin) -> int:
    """Forget the snapshot and prune the data only it used."""
    repo_name, short = split_snapshot_name(p.args.name)
    async with open_repository(p, repo_name) as repo:
        found = [s for s in await repo.restic.snapshots(no_lock=True) if s.id.startswith(short)]
        if not found:
            raise PluginError(f"not found: repository {repo_name} has no snapshot {short}")
        if p.dry_run:
            p.say(f"snapshot {p.args.name} ({found[0].id}) deleted (dry run)")
            return 0
        await repo.restic.forget_snapshots([found[0].id], prune=True)
    p.say(f"snapshot {p.args.name} deleted")
    return 0


def parse_age(text: str) -> dt.timedelta:
    """`90s`, `10m`, `1h30m` -> a timedelta (kubectl's duration style, whole units)."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None:
        raise PluginError(f'--min-age "{text}" is not a duration such as 10m, 90s or 1h')
    hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)


async def unlock(p: Plugin) -> int:
    """Remove stale locks; refuse (exit 1) while a live one remains, naming it."""
    min_age = parse_age(p.args.min_age)
    async with open_repository(p, p.args.repository) as repo:
        restic = repo.restic
        locks = await restic.locks()
        if p.args.remove_all:
            if p.dry_run:
                p.say(f"{len(locks)} lock(s) of {repo.name} removed (dry run)")
                return 0
            removed = await restic.unlock(remove_all=True)
            p.say(f"{removed or len(locks)} lock(s) of {repo.name} removed")
            return 0
        if p.dry_run:
            p.say(f"{len(locks)} lock(s) of {repo.name}; stale ones would be removed (dry run)")
            return 0
        # A lock not refreshed for min_age has no live owner, unless its restic runs here.
        cleanup = await remove_stale_locks(
            restic, min_age=min_age, session_final=lambda _lock: True
        )
        remaining = await restic.locks()
    for lock in cleanup.removed:
        p.say(f"removed stale lock {lock.id[:8]} (pid {lock.pid} on {lock.hostname})")
    if not remaining:
        if not cleanup.removed:
            p.say(f"repository {repo.name} has no locks")
        return 0
    now = dt.datetime.now(dt.UTC)
    live = ", ".join(
        f"{lk.id[:8]} (pid {lk.pid} on {lk.hostname}, {int(lk.age(now).total_seconds())}s old)"
        for lk in remaining
    )
    raise PluginError(
        f"repository {repo.name} still has live lock(s) {live}: wait for that backup or "
        f"restore to finish (a lock {min_age} old is stale), or pass --remove-all if no "
        "restic uses the repository"
    )


async def check(p: Plugin) -> int:
    """Run restic check; exit 1 when restic found errors."""
    async with open_repository(p, p.args.repository) as repo:
        try:
            result = await repo.restic.check(read_data_subset=p.args.read_data_subset)
        except ResticError as exc:
            raise PluginError(f"checking {repo.name}: {exc}") from None
    if result.ok:
        p.say(f"repository {repo.name}: no errors were found")
        return 0
    for message in result.messages:
        p.note(message)
    raise PluginError(
        f"repository {repo.name} has {result.num_errors or 'some'} error(s): "
        + ("run `restic repair index`" if result.suggest_repair_index else "see the messages above")
    )
