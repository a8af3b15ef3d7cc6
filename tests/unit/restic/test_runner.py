"""How the driver invokes restic: argv and environment (no restic needed)."""

from __future__ import annotations

import pytest

from stash.api.repository import Backend
from stash.restic.backend import restic_target
from stash.restic.driver import Restic
from stash.restic.runner import ResticOptions

SECRET = {"RESTIC_PASSWORD": b"pw-not-in-argv", "CA_CERT_DATA": b"CA"}


def driver(**opts: object) -> Restic:
    backend = Backend.model_validate({"rest": {"url": "https://h/r"}})
    target = restic_target(backend, SECRET, scratch_dir="/scratch", secret_name="s")
    return Restic(target, ResticOptions(**opts))  # type: ignore[arg-type]


def test_argv_wraps_nice_ionice_and_sets_global_flags() -> None:
    r = driver(
        binary="/opt/restic",
        nice=10,
        ionice_class=2,
        ionice_class_data=7,
        cache_dir="/scratch/restic-cache",
        limit_upload=1024,
        limit_download=2048,
    )
    argv = r._argv(["snapshots"], json_output=True, no_lock=True)
    assert argv == [
        "nice", "-n", "10",
        "ionice", "-c", "2", "-n", "7",
        "/opt/restic", "--json",
        "--cache-dir", "/scratch/restic-cache",
        "--limit-upload", "1024",
        "--limit-download", "2048",
        "--cacert", "/scratch/credentials/ca.crt",
        "--no-lock",
        "snapshots",
    ]  # fmt: skip
    assert not any("pw-not-in-argv" in a for a in argv)


def test_no_cache_wins_over_cache_dir() -> None:
    argv = driver(no_cache=True, cache_dir="/c")._argv(["check"], json_output=False, no_lock=False)
    assert "--no-cache" in argv and "--cache-dir" not in argv and "--json" not in argv


def test_env_carries_secrets_and_drops_our_own_restic_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RESTIC_PASSWORD_FILE", "/elsewhere")
    monkeypatch.setenv("RESTIC_REPOSITORY", "/wrong/repo")
    monkeypatch.setenv("HOME", "/home/op")
    env = driver(temp_dir="/scratch/tmp-1", progress_fps=0.5)._env()
    assert env["RESTIC_PASSWORD"] == "pw-not-in-argv"
    assert env["RESTIC_REPOSITORY"] == "rest:https://h/r"
    assert "RESTIC_PASSWORD_FILE" not in env
    assert env["TMPDIR"] == "/scratch/tmp-1"
    assert env["RESTIC_PROGRESS_FPS"] == "0.5"
    assert env["HOME"] == "/home/op"


def test_default_progress_rate_is_stash_s_once_a_minute() -> None:
    assert driver()._env()["RESTIC_PROGRESS_FPS"] == "0.016666"


def test_isolated_env() -> None:
    env = driver(inherit_env=False, extra_env={"PATH": "/bin"})._env()
    assert env["PATH"] == "/bin"
    assert "HOME" not in env
