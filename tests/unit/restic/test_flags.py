"""`target.args` may add only documented restic flags that change what is read or written."""

from __future__ import annotations

import pytest

from stash.restic.flags import extra_args_problem


@pytest.mark.parametrize(
    "args",
    [
        ["--password-command=sh -c 'id > /tmp/x'"],
        ["--password-command", "sh"],
        ["-o", "s3.storage-class=X"],
        ["--option=rest.connections=1"],
        ["--cacert", "/var/run/secrets/kubernetes.io/serviceaccount/token"],
        ["--repo", "s3:attacker/bucket"],
        ["--files-from", "/etc/shadow"],
        ["--host", "someone-else"],
        ["--dry-run"],
        ["--json"],
        ["/etc"],
        ["--exclude"],
        ["--one-file-system=yes"],
    ],
)
def test_backup_args_outside_the_allow_list_are_refused(args: list[str]) -> None:
    problem = extra_args_problem("backup", args)
    assert problem is not None
    assert "restic backup" in problem or "not a flag" in problem


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--one-file-system"],
        ["--exclude", "*.tmp", "--exclude=*.log", "--tag", "nightly"],
        ["--exclude-larger-than=1G", "--limit-upload", "1024", "--compression=max"],
    ],
)
def test_documented_backup_flags_pass(args: list[str]) -> None:
    assert extra_args_problem("backup", args) is None


def test_restore_has_its_own_list() -> None:
    assert extra_args_problem("restore", ["--verify", "--include", "/data/a"]) is None
    assert extra_args_problem("restore", ["--target", "/"]) is not None
    assert extra_args_problem("backup", ["--verify"]) is not None


async def test_the_driver_refuses_them_too_before_running_restic(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # an object admitted while the webhook was down never reaches restic with them
    from stash.restic import ResticOptions, ResticTarget
    from stash.restic.driver import Restic
    from stash.restic.errors import InvalidArguments

    target = ResticTarget(provider="local", repository=str(tmp_path), display="local", env={})
    restic = Restic(target, ResticOptions(binary=str(tmp_path / "no-such-restic")))
    with pytest.raises(InvalidArguments, match="--password-command"):
        await restic.backup(["/data"], extra_args=["--password-command=id"])
    with pytest.raises(InvalidArguments, match="--target"):
        await restic.restore("/", extra_args=["--target", "/etc"])
