"""The Snapshot API's documents: names, selectors, the table kubectl prints."""

from __future__ import annotations

import datetime as dt

import pytest

from stash.restic import Snapshot
from stash.snapshotapi import objects as O


def test_names_and_selectors() -> None:
    assert O.split_name("my-repo-0123abcd") == ("my-repo", "0123abcd")
    assert O.split_name("repo-xyz") is None and O.split_name("0123abcd") is None
    terms = O.parse_selector("repository=r, hostname!=db-0")
    assert terms == [("repository", "=", "r"), ("hostname", "!=", "db-0")]
    assert O.matches({"repository": "r", "hostname": "web-0"}, terms)
    assert not O.matches({"repository": "r", "hostname": "db-0"}, terms)
    assert O.parse_selector("a==b") == [("a", "=", "b")]
    with pytest.raises(ValueError, match="key=value"):
        O.parse_selector("env in (a,b)")


def test_a_snapshot_object_and_its_row() -> None:
    snap = Snapshot.model_validate({
        "id": "0123abcd" + "e" * 56, "time": "2026-01-02T03:04:05.5+01:00", "tree": "t",
        "paths": ["/data"], "hostname": "web-0", "username": "u",
    })  # fmt: skip
    obj = O.snapshot_object("repo", "ns", snap, {"team": "x", "repository": "ignored"})
    assert obj["metadata"]["name"] == "repo-0123abcd"
    assert obj["metadata"]["creationTimestamp"] == "2026-01-02T02:04:05Z"
    assert obj["metadata"]["labels"] == {"team": "x", "repository": "repo", "hostname": "web-0"}
    [row] = O.table([obj])["rows"]
    assert row["cells"] == ["repo-0123abcd", "0123abcd", "repo", "web-0", "2026-01-02T02:04:05Z"]
    assert snap.time.tzinfo is not None and snap.time.utcoffset() == dt.timedelta(hours=1)
