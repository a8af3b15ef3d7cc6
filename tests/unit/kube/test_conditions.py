"""Conditions keep their transition time unless their status changes."""

from __future__ import annotations

import datetime as dt

from stash.kube.conditions import get_condition, is_false, is_true, same, set_condition

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)


def test_transition_time_moves_only_when_status_changes() -> None:
    conds = set_condition(None, "RepositoryFound", True, "RepositoryAvailable", now=T0)
    conds = set_condition(conds, "RepositoryFound", True, "RepositoryAvailable", "again", now=T1)
    cond = get_condition(conds, "RepositoryFound")
    assert cond is not None and cond.last_transition_time == T0 and cond.message == "again"
    conds = set_condition(conds, "RepositoryFound", False, "RepositoryNotAvailable", now=T1)
    cond = get_condition(conds, "RepositoryFound")
    assert cond is not None and cond.last_transition_time == T1 and cond.status == "False"
    assert len(conds) == 1


def test_absent_is_neither_true_nor_false() -> None:
    conds = set_condition(None, "A", False, "r", now=T0)
    assert is_false(conds, "A") and not is_true(conds, "A")
    assert not is_false(conds, "B") and not is_true(conds, "B")


def test_same_ignores_timestamps_and_order() -> None:
    a = set_condition(set_condition(None, "A", True, "r", now=T0), "B", False, "s", now=T0)
    b = set_condition(set_condition(None, "B", False, "s", now=T1), "A", True, "r", now=T1)
    assert same(a, b)
    assert not same(a, set_condition(b, "A", False, "r", now=T1))
