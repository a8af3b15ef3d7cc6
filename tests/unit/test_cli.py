"""The `stash` command as a user runs it: bad input gets one clear line, `crds` works.

Runs the installed console script in a subprocess, so argument parsing, exit codes and
what reaches stderr are tested exactly as a shell sees them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stash.api import KINDS

STASH = Path(sys.executable).with_name("stash")
MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "crds"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STASH), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "args",
    [
        ("frobnicate",),
        ("crds", "--no-such-flag"),
        ("crds", "--out-dir"),
        ("--bogus",),
        (),
    ],
    ids=["unknown-command", "unknown-flag", "flag-missing-value", "unknown-top-flag", "none"],
)
def test_bad_invocation_exits_non_zero_with_one_line(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stash")
    assert "error" in lines[0]


def test_crds_prints_our_nine_crds_and_the_appbinding() -> None:
    result = _run("crds")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(docs) == 10
    assert {d["kind"] for d in docs} == {"CustomResourceDefinition"}
    assert {d["spec"]["names"]["kind"] for d in docs} == {*KINDS, "AppBinding"}
    (app,) = [d for d in docs if d["spec"]["group"] == "appcatalog.appscode.com"]
    assert app["metadata"]["name"] == "appbindings.appcatalog.appscode.com"


def test_crds_out_dir_writes_the_committed_manifests(tmp_path: Path) -> None:
    result = _run("crds", "--out-dir", str(tmp_path / "crds"))
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "crds").iterdir())
    assert written == sorted(p.name for p in MANIFESTS.glob("*.yaml"))
    for name in written:
        assert (tmp_path / "crds" / name).read_bytes() == (MANIFESTS / name).read_bytes()


def test_crds_unwritable_out_dir_is_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = _run("crds", "--out-dir", str(blocker / "crds"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(blocker) in result.stderr


def test_a_dev_install_offers_stash_dev() -> None:
    result = _run("dev", "--help")
    assert result.returncode == 0, result.stderr
    assert "demo" in result.stdout


def test_without_the_dev_tooling_stash_dev_says_it_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from stash.cli import main

    monkeypatch.setattr(main, "entry_points", lambda group: [])  # what the wheel alone has
    assert main.main(["dev", "up"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dev tools" in err[0] and "not installed" in err[0]
    assert "dev" not in main._commands(main.build_parser())


def test_a_built_in_command_loads_no_plugin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The agent's commands start in every backup Job: a plugin (the dev tools) is not
    # imported for them, so a broken or slow one cannot delay or break a backup.
    from stash.cli import main

    class Broken:
        module = "broken_plugin"

        def load(self) -> None:
            raise RuntimeError("plugin loaded")

    monkeypatch.setattr(main, "entry_points", lambda group: [Broken()])
    assert main.main(["crds"]) == 0
    assert "CustomResourceDefinition" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="plugin loaded"):
        main.main(["dev", "up"])
