"""restic failures -> error types a person can act on (messages as restic 0.19 prints them)."""

from __future__ import annotations

import pytest

from stash.restic.errors import (
    BackendAuthFailed,
    BackendUnreachable,
    BackupIncomplete,
    BucketNotFound,
    Interrupted,
    NoSpace,
    RepositoryLocked,
    RepositoryNotFound,
    ResticError,
    SnapshotNotFound,
    WrongPassword,
    classify,
    redact,
    restic_message,
)

LOCKED = (
    '{"message_type":"exit_error","code":11,"message":"unable to create lock in backend: '
    "repository is already locked by PID 16976 on vm by root (UID 0, GID 0)\\nlock was "
    "created at 2026-11-26 22:01:26 (3.290011794s ago)\\nstorage ID dd4cb87e\\nthe `unlock` "
    'command can be used to remove stale locks"}'
)


@pytest.mark.parametrize(
    ("code", "stderr", "kind"),
    [
        (
            12,
            '{"message_type":"exit_error","code":12,'
            '"message":"Fatal: wrong password or no key found"}',
            WrongPassword,
        ),
        (1, "Fatal: wrong password or no key found", WrongPassword),
        (
            10,
            "Fatal: repository does not exist: unable to open config file: stat /r/config: "
            "no such file or directory\nIs there a repository at the following location?\n/r",
            RepositoryNotFound,
        ),
        (11, LOCKED, RepositoryLocked),
        (
            1,
            "Stat(<config/>) returned error, retrying after 1s: Stat: The specified bucket "
            "does not exist\nFatal: unable to open config file: Stat: The specified bucket "
            "does not exist",
            BucketNotFound,
        ),
        (
            1,
            '{"message_type":"exit_error","code":1,"message":"Fatal: unable to open config '
            'file: unexpected HTTP response (401): 401 Unauthorized\\nrest:http://a:***@h/r/"}',
            BackendAuthFailed,
        ),
        (1, "Fatal: unable to open config file: Access Denied.", BackendAuthFailed),
        (
            1,
            "Fatal: create repository at s3:http://h/b failed: client.BucketExists: Get "
            '"http://h/b/?location=": dial tcp 127.0.0.1:1: connect: connection refused',
            BackendUnreachable,
        ),
        (1, "Fatal: unable to save snapshot: write /r/data/ab/x: no space left on device", NoSpace),
        (
            1,
            '{"message_type":"exit_error","code":1,"message":"Fatal: failed to find snapshot: '
            'no matching ID found for prefix \\"deadbeef\\""}',
            SnapshotNotFound,
        ),
        (
            1,
            "Fatal: failed to find snapshot: snapshot filter (Paths:[] Tags:[] Hosts:[x]): "
            "no snapshot found",
            SnapshotNotFound,
        ),
        (
            3,
            '{"message_type":"exit_error","code":3,'
            '"message":"Warning: at least one source file could not be read"}',
            BackupIncomplete,
        ),
        (130, "signal interrupt received, cleaning up", Interrupted),
        (1, "Fatal: something nobody expected", ResticError),
    ],
)
def test_classify(code: int, stderr: str, kind: type[ResticError]) -> None:
    error = classify(code, stderr, command="snapshots")
    assert type(error) is kind
    assert error.exit_code == code
    assert error.hint and error.message
    assert not error.message.startswith("Fatal:")
    assert str(error).startswith("restic snapshots: ") and "hint: " in str(error)


def test_missing_bucket_is_also_a_missing_repository() -> None:
    error = classify(1, "Stat: The specified bucket does not exist")
    assert isinstance(error, RepositoryNotFound)
    assert "bucket" in error.hint


def test_locked_error_names_the_holder() -> None:
    error = classify(11, LOCKED)
    assert isinstance(error, RepositoryLocked)
    assert error.holder is not None
    assert (error.holder.pid, error.holder.host, error.holder.user) == (16976, "vm", "root")
    assert error.holder.storage_id == "dd4cb87e"
    assert error.holder.age == "3.290011794s"
    assert not error.holder.exclusive
    assert "PID 16976 on host vm" in error.hint


def test_tls_failure_hints_at_ca_certificate() -> None:
    error = classify(1, 'Get "https://h/": x509: certificate signed by unknown authority')
    assert isinstance(error, BackendUnreachable)
    assert "CA_CERT_DATA" in error.hint


def test_restic_message_skips_retry_chatter() -> None:
    stderr = (
        "Stat(<config/>) returned error, retrying after 1.2s: Stat: boom\n"
        "signal terminated received, cleaning up\n"
        "Fatal: unable to open config file: context canceled\n"
    )
    assert restic_message(stderr) == "unable to open config file: context canceled"


def test_unknown_exit_code_without_message_is_still_an_error() -> None:
    error = classify(42, "")
    assert type(error) is ResticError
    assert "42" in error.message


def test_redact_removes_values_and_their_url_quoted_form() -> None:
    text = "rest:http://alice:p%40ss@h/r failed; password p@ss; user alice; pw=ab"
    out = redact(text, ["p@ss", "alice", "ab"])
    assert "p@ss" not in out and "p%40ss" not in out and "alice" not in out
    assert "pw=ab" in out  # too short to scrub without shredding ordinary words
