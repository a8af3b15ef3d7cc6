"""How to invoke restic for one repository: environment, argv, files, failures.

What it is for: `ResticOptions` (binary, cache, temp dir, nice/ionice, bandwidth
limits, progress rate, grace periods) and `ResticRunner`, the base of the driver that
turns a command's arguments into one restic process for a `ResticTarget`: the version
check, the environment (secrets only there, `RESTIC_*` of our own process dropped),
the global flags, the target's files, and failures classified into `errors` types
with secrets scrubbed and, for a lock conflict, the locks' details attached.

Not for: the meaning of individual commands (`driver`) or process mechanics
(`process`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stash.restic import process
from stash.restic.backend import ResticTarget, write_target_files
from stash.restic.errors import RepositoryLocked, ResticError, classify, redact
from stash.restic.ledger import RunLedger
from stash.restic.models import BackupProgress, BackupSummary, LockInfo, RestoreProgress
from stash.restic.version import ResticVersion, detect_version

__all__ = ["ProgressCallback", "ResticOptions", "ResticRunner", "json_doc", "json_value"]

log = logging.getLogger("stash.restic")

ProgressCallback = Callable[[BackupProgress | RestoreProgress], object]
"""Receives each progress event; exceptions it raises are logged, not propagated."""

DEFAULT_PROGRESS_FPS = 0.016666
"""One status line a minute, as Stash runs restic (stash-api.md §2.1)."""


@dataclass(frozen=True)
class ResticOptions:
    """How to run restic, independent of the repository.

    `scratch_dir` receives the target's files (CA certificate, GCS key) and, briefly,
    a new key's password file. `unreachable_timeout` bounds how long restic may retry
    an unreachable backend while opening the repository (None: restic's own 15 min).
    """

    binary: str = "restic"
    scratch_dir: str | None = None
    cache_dir: str | None = None
    no_cache: bool = False
    temp_dir: str | None = None
    nice: int | None = None
    ionice_class: int | None = None
    ionice_class_data: int | None = None
    limit_upload: int | None = None
    limit_download: int | None = None
    progress_fps: float | None = DEFAULT_PROGRESS_FPS
    kill_grace: float = 10.0
    unreachable_timeout: float | None = 120.0
    run_ledger: RunLedger | None = None
    inherit_env: bool = True
    extra_env: Mapping[str, str] = field(default_factory=dict)


def json_doc(raw: bytes) -> dict[str, Any] | None:
    text = raw.strip()
    if not text.startswith(b"{"):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def json_value(stdout: bytes) -> Any:
    """The JSON document in restic's stdout, skipping any text lines around it."""
    text = stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        for line in text.splitlines():
            if line.strip().startswith((b"[", b"{")):
                try:
                    return json.loads(line)
                except ValueError:
                    continue
    raise ResticError(f"restic printed no JSON: {text[:200].decode(errors='replace')!r}")


class ResticRunner:
    """Runs restic commands against one repository; the driver's base class."""

    def __init__(self, target: ResticTarget, options: ResticOptions | None = None) -> None:
        self.target = target
        self.options = options or ResticOptions()
        self._version: ResticVersion | None = None
        self._files_written = False
        self.backed_up: list[BackupSummary] = []
        """Summaries of the backups this driver ran (what each added to the repository)."""
        self.created_repository = False
        """This driver's `init` created the repository (it was empty until now)."""

    async def version(self) -> ResticVersion:
        """The restic version (checked against the minimum once per binary)."""
        if self._version is None:
            self._version = await detect_version(self.options.binary)
        return self._version

    def _env(self) -> dict[str, str]:
        opts = self.options
        env: dict[str, str] = {}
        if opts.inherit_env:
            # A RESTIC_* variable of our own process must not redirect restic elsewhere.
            env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env.update(opts.extra_env)
        env.update(self.target.env)
        if opts.progress_fps is not None:
            env["RESTIC_PROGRESS_FPS"] = str(opts.progress_fps)
        if opts.temp_dir:
            env["TMPDIR"] = opts.temp_dir
        return env

    def _argv(self, args: Sequence[str], *, json_output: bool, no_lock: bool) -> list[str]:
        opts = self.options
        argv: list[str] = []
        if opts.nice is not None:
            argv += ["nice", "-n", str(opts.nice)]
        if opts.ionice_class is not None:
            argv += ["ionice", "-c", str(opts.ionice_class)]
            if opts.ionice_class_data is not None:
                argv += ["-n", str(opts.ionice_class_data)]
        argv.append(opts.binary)
        if json_output:
            argv.append("--json")
        if opts.no_cache:
            argv.append("--no-cache")
        elif opts.cache_dir:
            argv += ["--cache-dir", opts.cache_dir]
        if opts.limit_upload:
            argv += ["--limit-upload", str(opts.limit_upload)]
        if opts.limit_download:
            argv += ["--limit-download", str(opts.limit_download)]
        argv += self.target.options
        if no_lock:
            argv.append("--no-lock")
        argv += args
        return argv

    def _prepare_files(self) -> None:
        if self._files_written or not self.target.files:
            return
        if not self.options.scratch_dir:
            raise ResticError(
                "the backend needs files (CA certificate or key) but no scratch_dir is set",
                hint="set ResticOptions.scratch_dir to the dir given to restic_target()",
            )
        write_target_files(self.target, self.options.scratch_dir)
        self._files_written = True

    async def _exec(
        self,
        args: Sequence[str],
        *,
        json_output: bool = True,
        no_lock: bool = False,
        on_line: process.LineHandler | None = None,
        ok: Sequence[int] = (0,),
    ) -> process.Completed:
        await self.version()
        self._prepare_files()
        argv = self._argv(args, json_output=json_output, no_lock=no_lock)
        command = args[0] if args else ""
        log.debug("running %s on %s", " ".join(argv), self.target.display)
        try:
            done = await process.run(
                argv,
                self._env(),
                on_line=on_line,
                watch=process.RetryWatch(self.options.unreachable_timeout),
                grace=self.options.kill_grace,
                ledger=self.options.run_ledger,
            )
        except ResticError as exc:
            raise self._scrub(exc, command) from None
        if done.exit_code in ok:
            return done
        raise await self._failure(done, command)

    def _scrub(self, exc: ResticError, command: str) -> ResticError:
        exc.message = redact(exc.message, self.target.secrets)
        exc.args = (exc.message,)
        exc.command = exc.command or command
        return exc

    async def _failure(self, done: process.Completed, command: str) -> ResticError:
        error = self._scrub(classify(done.exit_code, done.stderr, command=command), command)
        error.stderr = redact(done.stderr, self.target.secrets)
        if isinstance(error, RepositoryLocked) and command not in ("list", "cat"):
            try:
                error.locks = tuple(await self.locks())
            except ResticError as exc:  # best effort: the lock error is what matters
                log.debug("could not list locks of %s: %s", self.target.display, exc)
        return error

    @staticmethod
    def _emit(callback: ProgressCallback | None, event: BackupProgress | RestoreProgress) -> None:
        if callback is None:
            return
        try:
            callback(event)
        except Exception:
            log.exception("progress callback failed; the restic run goes on")

    async def locks(self) -> list[LockInfo]:
        """Every lock with its details (implemented by the driver)."""
        raise NotImplementedError
