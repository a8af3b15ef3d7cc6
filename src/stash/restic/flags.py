"""Which restic flags a user may add through `target.args` (and restore rules' args).

What it is for: `extra_args_problem(command, args)`, the one allow-list of documented
`restic backup` / `restic restore` flags that change *what* is backed up or restored
and how fast. The webhook refuses anything else at admission and the driver refuses it
again before running restic (an object admitted while the webhook was down).

Why an allow-list: the agent runs restic with the repository's credentials. Flags such
as `--password-command` (runs a command), `--option`/`-o`, `--cacert`, `--repo`,
`--files-from` or `--password-file` (read agent files, or redirect the backup) would let
the author of a BackupConfiguration make the agent act for them; `--host`, `--json`,
`--dry-run` or `--stdin` would break what the operator records (a dry run reports
success with no snapshot). Positional arguments would add paths to the backup.

Not for: the flags the driver itself passes.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ALLOWED_FLAGS", "extra_args_problem"]

# flag -> takes a value (as `--flag value` or `--flag=value`)
_COMMON: dict[str, bool] = {
    "--exclude": True,
    "-e": True,
    "--iexclude": True,
    "--limit-upload": True,
    "--limit-download": True,
    "--pack-size": True,
    "--compression": True,
    "--verbose": False,
    "-v": False,
    "--no-lock": False,
}
_BACKUP: dict[str, bool] = {
    **_COMMON,
    "--exclude-caches": False,
    "--exclude-if-present": True,
    "--exclude-larger-than": True,
    "--one-file-system": False,
    "-x": False,
    "--tag": True,
    "--with-atime": False,
    "--ignore-inode": False,
    "--ignore-ctime": False,
    "--no-scan": False,
    "--read-concurrency": True,
    "--skip-if-unchanged": False,
    "--force": False,
    "-f": False,
}
_BACKUP.pop("--no-lock")  # backup always takes a lock
_RESTORE: dict[str, bool] = {
    **_COMMON,
    "--include": True,
    "-i": True,
    "--iinclude": True,
    "--tag": True,
    "--path": True,
    "--verify": False,
    "--sparse": False,
    "--overwrite": True,
    "--delete": False,
}

ALLOWED_FLAGS: dict[str, dict[str, bool]] = {"backup": _BACKUP, "restore": _RESTORE}


def extra_args_problem(command: str, args: Sequence[str]) -> str | None:
    """What is wrong with user-given extra `args` for `restic <command>` (None when fine)."""
    allowed = ALLOWED_FLAGS[command]
    expect_value = False
    for arg in args:
        if expect_value:
            expect_value = False
            continue
        if not arg.startswith("-") or arg in ("-", "--"):
            return (
                f'"{arg}" is not a flag: args may only add restic {command} flags '
                "(paths come from the target's paths)"
            )
        name, eq, _ = arg.partition("=")
        if name not in allowed:
            return f'restic {command} flag "{name}" is not allowed in args; allowed: ' + ", ".join(
                sorted(f for f in allowed if f.startswith("--"))
            )
        takes_value = allowed[name]
        if eq and not takes_value:
            return f'restic {command} flag "{name}" takes no value'
        expect_value = takes_value and not eq
    if expect_value:
        return f'restic {command} flag "{args[-1]}" needs a value'
    return None
