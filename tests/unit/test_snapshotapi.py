"""The Snapshot API's documents: names, selectors, the table kubectl prints."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from stash.cli.main import build_parser
from stash.cli.operator import settings_from
from stash.restic import Snapshot
from stash.settings import OperatorSettings
from stash.snapshotapi import objects as O
from stash.snapshotserving import registration_of


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


# ---------------------------------------------------------------- the operator's settings


@pytest.mark.parametrize(
    ("flags", "served", "port", "managed"),
    [
        ((), True, 8444, True),
        (("--no-snapshot-api",), False, 8444, True),
        (("--snapshot-api-port=9444", "--no-snapshot-api-manage-apiservice"), True, 9444, False),
    ],
)
def test_stash_operator_flags_say_whether_and_where_the_snapshot_api_is_served(
    flags: tuple[str, ...],
    served: bool,
    port: int,
    managed: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in [v for v in os.environ if v.startswith("STASH_")]:
        monkeypatch.delenv(var)
    settings = settings_from(build_parser().parse_args(["operator", *flags]))
    assert settings.serve_snapshot_api is served
    assert settings.snapshot_api_port == port
    assert settings.snapshot_api_manage_apiservice is managed


@pytest.mark.parametrize(
    ("overrides", "registration"),
    [
        ({}, "apiservice"),
        ({"snapshot_api_manage_apiservice": False}, "ca-bundle"),
        ({"webhook_cert_dir": "/etc/tls"}, "none"),  # cert-manager injects the caBundle
    ],
)
def test_what_the_operator_registers_follows_the_webhooks_rules(
    overrides: dict[str, object], registration: str
) -> None:
    assert registration_of(OperatorSettings(**overrides)) == registration  # type: ignore[arg-type]
