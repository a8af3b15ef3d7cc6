"""The restic driver: one async method per restic command, typed results, typed errors.

What it is for: `Restic(target, options)` runs restic against one repository
(`ResticTarget` from `backend.restic_target`): init (idempotent), backup of paths or
of a command's output, snapshots, forget with a RetentionPolicy, check, stats,
restore, unlock, keys, config and locks. Results are `models` types, failures
`errors` types; backup and restore report progress to a callback.

Not for: how restic is invoked (`runner`, `process`), backend mapping (`backend`),
retention flags (`retention`) or the stale-lock policy (`locks`).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stash.restic import process
from stash.restic.errors import (
    BackupCommandFailed,
    BackupIncomplete,
    InvalidArguments,
    RepositoryNotFound,
    ResticError,
    SnapshotNotFound,
    classify,
    incomplete_backup_hint,
    redact,
)
from stash.restic.flags import extra_args_problem
from stash.restic.models import (
    BackupError,
    BackupProgress,
    BackupSummary,
    CheckResult,
    ForgetGroup,
    ForgetResult,
    InitResult,
    Key,
    LockInfo,
    RepositoryConfig,
    RepositoryStats,
    RestoreProgress,
    RestoreSummary,
    Snapshot,
)
from stash.restic.pipe import Piped, pipe_into
from stash.restic.retention import has_keep_rule, retention_args
from stash.restic.runner import ProgressCallback, ResticOptions, ResticRunner, json_doc, json_value
from stash.restic.version import FEATURES, require

if TYPE_CHECKING:
    from stash.api.common import RetentionPolicy

__all__ = ["ProgressCallback", "Restic", "ResticOptions"]

log = logging.getLogger("stash.restic")


def _check_extra_args(command: str, extra_args: Sequence[str]) -> None:
    problem = extra_args_problem(command, extra_args)
    if problem:
        raise InvalidArguments(problem, command=command)


def _stderr_tail(path: str, lines: int = 5, limit: int = 4096) -> str:
    """The last lines a `--stdin-from-command` command wrote to stderr (the file its
    stderr was sent to; restic's own relay of it can lose lines when restic exits)."""
    try:
        with open(path, "rb") as said:
            said.seek(max(0, os.fstat(said.fileno()).st_size - limit))
            text = said.read().decode(errors="replace")
    except OSError:
        return ""
    return " | ".join([ln.strip() for ln in text.splitlines() if ln.strip()][-lines:])


class Restic(ResticRunner):
    """Drive restic against one repository. Methods may run concurrently."""

    # ---- repository ------------------------------------------------------------

    async def config(self) -> RepositoryConfig:
        """The repository config (`cat config`); RepositoryNotFound if there is none."""
        done = await self._exec(["cat", "config"], json_output=False, no_lock=True)
        return RepositoryConfig.model_validate(json_value(done.stdout))

    async def init(self) -> InitResult:
        """Create the repository unless it exists; `created` says which happened."""
        try:
            return InitResult(repository_id=(await self.config()).id, created=False)
        except RepositoryNotFound:
            pass
        try:
            done = await self._exec(["init"])
        except ResticError as exc:
            if "already exists" not in exc.message:
                raise
            # Someone else created it between our check and our init.
            return InitResult(repository_id=(await self.config()).id, created=False)
        self.created_repository = True
        for line in done.stdout.splitlines():
            doc = json_doc(line)
            if doc and doc.get("message_type") == "initialized":
                return InitResult(repository_id=str(doc["id"]), created=True)
        return InitResult(repository_id=(await self.config()).id, created=True)

    async def stats(self, *, no_lock: bool = False) -> RepositoryStats:
        """Stored size of the repository (`stats --mode raw-data`)."""
        done = await self._exec(["stats", "--mode", "raw-data"], no_lock=no_lock)
        return RepositoryStats.model_validate(json_value(done.stdout))

    async def check(
        self, *, read_data_subset: str | None = None, no_lock: bool = False
    ) -> CheckResult:
        """Check the repository; `ok` is False when restic found errors.

        Errors about reaching or opening the repository are raised, not returned.
        """
        use_json = await self.version() >= FEATURES["check --json"]
        args = ["check"]
        if read_data_subset:
            args += ["--read-data-subset", read_data_subset]
        done = await self._exec(args, json_output=use_json, no_lock=no_lock, ok=(0, 1))
        summary: dict[str, Any] = {}
        for line in done.stdout.splitlines():
            doc = json_doc(line)
            if doc and doc.get("message_type") == "summary":
                summary = doc
        if done.exit_code == 0:
            return CheckResult.model_validate({**summary, "ok": True})
        error = classify(done.exit_code, done.stderr, command="check")
        if type(error) is not ResticError:
            raise self._scrub(error, "check")
        messages = [m for m in done.stderr.splitlines() if m.strip()][-50:]
        return CheckResult.model_validate(
            {**summary, "ok": False, "messages": [redact(m, self.target.secrets) for m in messages]}
        )

    async def unlock(self, *, remove_all: bool = False) -> int:
        """Remove stale locks (restic's rule), or every lock with `remove_all`; count."""
        args = ["unlock"] + (["--remove-all"] if remove_all else [])
        done = await self._exec(args, json_output=False)
        match = re.search(rb"removed (\d+) lock", done.stdout)
        return int(match[1]) if match else 0

    # ---- snapshots ---------------------------------------------------------------

    async def snapshots(
        self,
        *,
        host: str | None = None,
        paths: Sequence[str] = (),
        tags: Sequence[str] = (),
        ids: Sequence[str] = (),
        no_lock: bool = False,
    ) -> list[Snapshot]:
        """Snapshots, oldest first, filtered by host, paths and tags (all must match)."""
        args = ["snapshots"]
        if host:
            args += ["--host", host]
        for p in paths:
            args += ["--path", p]
        for t in tags:
            args += ["--tag", t]
        done = await self._exec([*args, *ids], no_lock=no_lock)
        docs = json_value(done.stdout) or []
        return [Snapshot.model_validate(d) for d in docs]

    async def forget(self, policy: RetentionPolicy) -> ForgetResult:
        """Apply a retention policy to every host/paths group (no `--host`, as Stash).

        A policy without any keep rule forgets nothing and does not run restic (restic
        itself refuses such a call).
        """
        if not has_keep_rule(policy):
            return ForgetResult(dry_run=bool(policy.dry_run))
        done = await self._exec(["forget", *retention_args(policy)])
        docs = json_value(done.stdout) if done.stdout.strip() else []
        return ForgetResult(
            groups=tuple(ForgetGroup.model_validate(d) for d in docs or []),
            dry_run=bool(policy.dry_run),
            pruned=bool(policy.prune) and not policy.dry_run,
        )

    async def forget_snapshots(self, ids: Sequence[str], *, prune: bool = False) -> None:
        """Remove the given snapshots (and with `prune` their unreferenced data)."""
        if ids:
            await self._exec(["forget", *(["--prune"] if prune else []), *ids])

    # ---- backup and restore -----------------------------------------------------------

    async def backup(
        self,
        paths: Sequence[str],
        *,
        host: str | None = None,
        tags: Sequence[str] = (),
        excludes: Sequence[str] = (),
        time: datetime | None = None,
        extra_args: Sequence[str] = (),
        on_progress: ProgressCallback | None = None,
    ) -> BackupSummary:
        """Back up `paths`; returns restic's summary (with the new snapshot's ID).

        Raises BackupIncomplete (with the summary) when some files could not be read:
        the snapshot exists but lacks them.
        """
        args = self._backup_args(host, tags, time, extra_args)
        for pattern in excludes:
            args += ["--exclude", pattern]
        return await self._backup([*args, "--", *paths], on_progress, stdin=False)

    async def backup_command(
        self,
        command: Sequence[str],
        *,
        filename: str,
        host: str | None = None,
        tags: Sequence[str] = (),
        time: datetime | None = None,
        extra_args: Sequence[str] = (),
        on_progress: ProgressCallback | None = None,
    ) -> BackupSummary:
        """Back up what `command` writes to stdout, stored as `filename`.

        A command that fails (non-zero exit, killed) or writes nothing raises
        BackupCommandFailed, and no snapshot of its output is left in the repository.
        """
        require(await self.version(), "backup --stdin-from-command")
        args = self._backup_args(host, tags, time, extra_args)
        with tempfile.TemporaryDirectory(prefix="stash-dump-") as scratch:
            said = os.path.join(scratch, "stderr")
            # the command's stderr goes to a file of ours (`exec` keeps its PID, so a
            # cancel still kills it): restic relays it in a goroutine that loses the last
            # lines when restic exits first, and those name why a dump failed.
            wrapped = ["/bin/sh", "-c", 'exec "$@" 2>"$0"', said, *command]
            args += ["--stdin-from-command", "--stdin-filename", filename, "--", *wrapped]
            return await self._backup(args, on_progress, stdin=True, stderr_file=said)

    def _backup_args(
        self,
        host: str | None,
        tags: Sequence[str],
        time: datetime | None,
        extra_args: Sequence[str],
    ) -> list[str]:
        _check_extra_args("backup", extra_args)
        args = ["backup"]
        if not self.options.no_cache:
            args.append("--cleanup-cache")
        if host:
            args += ["--host", host]
        for tag in tags:
            args += ["--tag", tag]
        if time is not None:
            # restic reads --time as local time; an aware datetime is converted to it.
            local = time.astimezone() if time.tzinfo is not None else time
            args += ["--time", local.strftime("%Y-%m-%d %H:%M:%S")]
        return [*args, *extra_args]

    async def _backup(
        self,
        args: list[str],
        on_progress: ProgressCallback | None,
        *,
        stdin: bool,
        stderr_file: str | None = None,
    ) -> BackupSummary:
        found: list[BackupSummary] = []

        def on_line(raw: bytes) -> None:
            doc = json_doc(raw)
            if doc is None:
                return
            kind = doc.get("message_type")
            if kind == "status":
                self._emit(on_progress, BackupProgress.model_validate(doc))
            elif kind == "summary":
                found.append(BackupSummary.model_validate(doc))

        try:
            done = await self._exec(args, on_line=on_line, ok=(0, 3))
        except ResticError as exc:
            if stdin and type(exc) is ResticError:
                said = _stderr_tail(stderr_file) if stderr_file else ""
                message = f"{exc.message}; the command wrote: {said}" if said else exc.message
                raise BackupCommandFailed(message, command="backup") from None
            raise
        if not found:
            raise ResticError(
                "restic backup exited without a summary; no snapshot can be trusted",
                exit_code=done.exit_code,
                command="backup",
            )
        errors = self._file_errors(done.stderr)
        summary = found[-1].model_copy(update={"errors": tuple(errors)})
        self.backed_up.append(summary)  # its data is in the repository, whatever follows
        if done.exit_code == 0:
            return summary
        detail = "; ".join(e.message for e in errors) or "some source files could not be read"
        if stdin:
            # restic keeps an empty snapshot when the command wrote nothing: drop it, so
            # `restore latest` can never pick an empty dump.
            if summary.snapshot_id:
                await self.forget_snapshots([summary.snapshot_id])
            raise BackupCommandFailed(
                f"the dump command produced no usable output: {detail}",
                exit_code=done.exit_code,
                command="backup",
            )
        raise BackupIncomplete(
            detail,
            hint=incomplete_backup_hint([e.message for e in errors]),
            exit_code=done.exit_code,
            command="backup",
            summary=summary,
            errors=[e.message for e in errors],
        )

    def _file_errors(self, stderr: str) -> list[BackupError]:
        """Per-file errors restic wrote to stderr during a backup.

        Most are `error` JSON lines; a few (a missing source path) are plain text.
        """
        errors: list[BackupError] = []
        for line in stderr.splitlines():
            doc = json_doc(line.encode())
            if doc is None:
                if line.strip():
                    errors.append(BackupError(message=redact(line.strip(), self.target.secrets)))
                continue
            if doc.get("message_type") != "error":
                continue
            err = doc.get("error") or {}
            message = err.get("message", "") if isinstance(err, dict) else str(err)
            errors.append(
                BackupError(
                    message=redact(str(message), self.target.secrets),
                    during=str(doc.get("during", "")),
                    item=str(doc.get("item", "")),
                )
            )
        return errors

    async def restore(
        self,
        target_dir: str,
        snapshot: str = "latest",
        *,
        host: str | None = None,
        paths: Sequence[str] = (),
        includes: Sequence[str] = (),
        excludes: Sequence[str] = (),
        sparse: bool = False,
        extra_args: Sequence[str] = (),
        on_progress: ProgressCallback | None = None,
    ) -> RestoreSummary:
        """Restore `snapshot` (an ID, or "latest" narrowed by host and paths) into
        `target_dir`; restic recreates the snapshot's absolute paths below it.

        `includes` and `excludes` are restic patterns; restic takes one kind or the
        other, so passing both is a ValueError.
        """
        if includes and excludes:
            raise ValueError("restic restores with include or exclude patterns, not both")
        _check_extra_args("restore", extra_args)
        args = ["restore", snapshot, "--target", target_dir]
        if host:
            args += ["--host", host]
        for p in paths:
            args += ["--path", p]
        for pattern in includes:
            args += ["--include", pattern]
        for pattern in excludes:
            args += ["--exclude", pattern]
        if sparse:
            args.append("--sparse")
        found: list[RestoreSummary] = []

        def on_line(raw: bytes) -> None:
            doc = json_doc(raw)
            if doc is None:
                return
            if doc.get("message_type") == "status":
                self._emit(on_progress, RestoreProgress.model_validate(doc))
            elif doc.get("message_type") == "summary":
                found.append(RestoreSummary.model_validate(doc))

        await self._exec([*args, *extra_args], on_line=on_line)
        if not found:
            raise SnapshotNotFound(f"restic restored nothing from {snapshot}", command="restore")
        return found[-1]

    async def dump_into(
        self,
        snapshot: str,
        path: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
    ) -> Piped:
        """Stream file `path` of `snapshot` (`restic dump`) into `command`'s stdin through
        an OS pipe (`pipe.pipe_into`). A failed `restic dump` raises its ResticError
        unless `command` failed too (the caller reports that one, it is the cause more
        often: a loader that stops reading kills the dump with SIGPIPE)."""
        await self.version()
        self._prepare_files()
        argv = self._argv(["dump", snapshot, path], json_output=False, no_lock=False)
        done = await pipe_into(argv, self._env(), command, env)
        if done.producer_exit != 0 and done.consumer_exit == 0:
            failed = process.Completed(done.producer_exit, b"", done.producer_stderr)
            raise await self._failure(failed, "dump")
        return done

    # ---- keys ---------------------------------------------------------------------

    async def keys(self) -> list[Key]:
        """The repository's keys (`key list`)."""
        done = await self._exec(["key", "list"])
        return [Key.model_validate(d) for d in json_value(done.stdout) or []]

    async def add_key(
        self, new_password: str, *, host: str | None = None, user: str | None = None
    ) -> str:
        """Add a key for `new_password`; return its ID. The password passes via a
        0600 file in the scratch dir that is removed right after."""
        scratch = self.options.scratch_dir or self.options.temp_dir
        fd, path = tempfile.mkstemp(prefix="restic-key-", dir=scratch)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(new_password)
            args = ["key", "add", "--new-password-file", path]
            if host:
                args += ["--host", host]
            if user:
                args += ["--user", user]
            done = await self._exec(args, json_output=False)
        finally:
            os.unlink(path)
        match = re.search(rb"key with ID ([0-9a-f]+)", done.stdout)
        if match is None:
            raise ResticError("restic key add did not print the new key's ID", command="key")
        return match[1].decode()

    async def remove_key(self, key_id: str) -> None:
        """Remove a key (restic refuses to remove the key in use)."""
        await self._exec(["key", "remove", key_id], json_output=False)

    # ---- locks ----------------------------------------------------------------------

    async def lock_ids(self) -> list[str]:
        """IDs of the locks in the repository (`list locks`, without taking a lock)."""
        done = await self._exec(["list", "locks"], json_output=False, no_lock=True)
        return [ln.strip() for ln in done.stdout.decode().splitlines() if ln.strip()]

    async def lock(self, lock_id: str) -> LockInfo:
        """One lock's details (`cat lock ID`)."""
        done = await self._exec(["cat", "lock", lock_id], json_output=False, no_lock=True)
        return LockInfo.model_validate({**json_value(done.stdout), "id": lock_id})

    async def locks(self) -> list[LockInfo]:
        """Every lock with its details; locks released meanwhile are left out."""
        infos: list[LockInfo] = []
        for lock_id in await self.lock_ids():
            try:
                infos.append(await self.lock(lock_id))
            except ResticError as exc:
                log.debug("lock %s vanished while listing: %s", lock_id[:8], exc)
        return infos
