"""Parsing restic's JSON and its size strings."""

from __future__ import annotations

import pytest

from stash.restic.models import ForgetGroup, Snapshot, format_bytes, parse_bytes

SNAP = {
    "time": "2026-11-26T22:01:18.481387126Z",
    "tree": "39d2",
    "paths": ["/tmp/rx/data"],
    "hostname": "vm",
    "username": "root",
    "tags": None,
    "program_version": "restic 0.19.1",
    "summary": {"files_new": 1, "data_added": 1062, "future_field": 1},
    "id": "bb73e307" + "0" * 56,
    "short_id": "bb73e307",
}


def test_snapshot_null_tags_and_unknown_fields() -> None:
    snap = Snapshot.model_validate(SNAP)
    assert snap.tags == ()
    assert snap.summary is not None and snap.summary.data_added == 1062
    assert snap.time.microsecond == 481387


def test_forget_group_with_nulls() -> None:
    group = ForgetGroup.model_validate(
        {"tags": None, "host": "vm", "paths": ["/d"], "keep": [SNAP], "remove": None,
         "reasons": [{"snapshot": SNAP, "matches": ["last snapshot"]}]}
    )  # fmt: skip
    assert group.remove == ()
    assert group.reasons[0].matches == ("last snapshot",)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.000 KiB"),
        (4376739, "4.174 MiB"),
        (3 << 30, "3.000 GiB"),
        (5 << 40, "5.000 TiB"),
    ],
)
def test_sizes_like_restic(n: int, text: str) -> None:
    assert format_bytes(n) == text
    assert abs(parse_bytes(text) - n) <= n * 0.0005


def test_parse_bytes_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_bytes("lots")
