"""restic version parsing and the minimum-version rule."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stash.restic.errors import FeatureUnavailable, ResticTooOld
from stash.restic.version import (
    MINIMUM,
    ResticVersion,
    check_supported,
    detect_version,
    parse_version,
    require,
)


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("restic 0.19.1 compiled with go1.26.8 on linux/amd64\n", ResticVersion(0, 19, 1)),
        ("restic 0.17.0 (v0.17.0-12-gdeadbeef) compiled with go1.22", ResticVersion(0, 17, 0)),
        (
            '{"message_type":"version","version":"0.18.1","go_version":"go1.24"}',
            ResticVersion(0, 18, 1),
        ),
        ("restic 1.0 compiled with go1.30", ResticVersion(1, 0, 0)),
    ],
)
def test_parse(output: str, version: ResticVersion) -> None:
    assert parse_version(output) == version


def test_too_old_names_found_and_minimum() -> None:
    with pytest.raises(ResticTooOld) as info:
        check_supported(ResticVersion(0, 16, 4), "/usr/bin/restic")
    text = str(info.value)
    assert "0.16.4" in text and str(MINIMUM) in text and "/usr/bin/restic" in text
    assert check_supported(ResticVersion(0, 17, 0)) == ResticVersion(0, 17, 0)


def test_feature_needing_newer_restic() -> None:
    with pytest.raises(FeatureUnavailable, match=r"check --json needs restic 0\.18\.0"):
        require(ResticVersion(0, 17, 3), "check --json")
    require(ResticVersion(0, 18, 0), "check --json")


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(Exception, match="cannot read a restic version"):
        parse_version("bash: restic: command not found")


async def test_callers_asking_at_once_share_one_restic_version_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake = tmp_path / "restic"
    fake.write_text(
        f"#!/bin/sh\necho run >> {runs}\nsleep 0.2\necho 'restic 0.19.1 compiled with go1.26'\n"
    )
    fake.chmod(0o755)
    found = await asyncio.gather(*(detect_version(str(fake)) for _ in range(3)))
    assert found == [ResticVersion(0, 19, 1)] * 3
    assert await detect_version(str(fake)) == ResticVersion(0, 19, 1)  # remembered
    assert runs.read_text().splitlines() == ["run"]
