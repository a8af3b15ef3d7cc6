"""Which rule a restoring host follows, and what it restores (stash-api.md §1.1, §5.6)."""

from __future__ import annotations

import pytest

from stash.agent.restore import RestoreRequest, request_from_rule, select_rule
from stash.api.common import Rule
from stash.contract.restorerules import RuleMatch, job_host, job_host_of, match_rule

SPECIFIC = Rule(target_hosts=["host-1"], source_host="host-0", paths=["/data"])
CATCH_ALL = Rule(paths=["/data", "/conf"], include=["*.db"], exclude=["tmp/*"])


def test_a_rule_naming_the_host_wins_over_the_catch_all() -> None:
    assert select_rule([CATCH_ALL, SPECIFIC], "host-1") is SPECIFIC
    assert select_rule([CATCH_ALL, SPECIFIC], "host-2") is CATCH_ALL
    assert select_rule([SPECIFIC], "host-2") is None


def test_source_host_defaults_to_the_restoring_host() -> None:
    got = request_from_rule([CATCH_ALL], "host-3", ["--sparse"])
    assert got == RestoreRequest(
        hostname="host-3",
        source_host="host-3",
        paths=("/data", "/conf"),
        includes=("*.db",),
        excludes=("tmp/*",),
        args=("--sparse",),
    )
    assert isinstance(specific := request_from_rule([SPECIFIC], "host-1"), RestoreRequest)
    assert specific.source_host == "host-0"


def test_snapshots_are_restored_as_listed() -> None:
    got = request_from_rule([Rule(snapshots=["abc123", "def456"])], "host-0")
    assert isinstance(got, RestoreRequest) and got.snapshots == ("abc123", "def456")


def test_a_rule_that_selects_nothing_is_an_error_saying_so() -> None:
    got = request_from_rule([Rule(target_hosts=["host-0"])], "host-0")
    assert isinstance(got, str) and "selects nothing" in got


def test_a_host_no_rule_is_for_restores_nothing_and_a_restore_without_rules_fails() -> None:
    # Upstream (util.RestoreOptionsForHost): rules naming only some hosts, no catch-all,
    # leave the other hosts nothing to restore; they succeed without touching data.
    got = request_from_rule([SPECIFIC], "host-2")
    assert isinstance(got, RestoreRequest) and got.nothing
    assert got.hostname == "host-2"
    assert not request_from_rule([SPECIFIC], "host-1").nothing  # type: ignore[union-attr]
    assert "no rules" in str(request_from_rule([], "host-0"))


def test_how_a_hosts_rule_is_found() -> None:
    assert match_rule([], "host-0") == (RuleMatch.NO_RULES, None)
    assert match_rule([SPECIFIC, CATCH_ALL], "host-1") == (RuleMatch.NAMED, SPECIFIC)
    assert match_rule([SPECIFIC, CATCH_ALL], "node-0") == (RuleMatch.CATCH_ALL, CATCH_ALL)
    assert match_rule([SPECIFIC], "node-0") == (RuleMatch.UNNAMED, None)


@pytest.mark.parametrize(
    ("alias", "ordinal", "host"),
    [("db", None, "db"), ("db", 2, "db-2"), (None, None, "host-0"), (None, 3, "host-3")],
)
def test_a_restore_job_host_is_the_alias_or_alias_and_ordinal(
    alias: str | None, ordinal: int | None, host: str
) -> None:
    assert job_host(alias, ordinal) == host
    assert job_host_of(alias, host)


@pytest.mark.parametrize(
    ("alias", "host"), [("db", "dbx"), ("db", "db-x"), ("db", "other-0"), (None, "db-0")]
)
def test_a_host_another_alias_names_is_not_this_members(alias: str | None, host: str) -> None:
    assert not job_host_of(alias, host)
