"""RetentionPolicy -> restic forget flags (stash-api.md §1.1)."""

from __future__ import annotations

from stash.api.common import RetentionPolicy
from stash.restic.retention import has_keep_rule, retention_args


def test_every_field_maps_to_its_flag_in_order() -> None:
    policy = RetentionPolicy(
        name="p",
        keep_last=5,
        keep_hourly=24,
        keep_daily=7,
        keep_weekly=4,
        keep_monthly=12,
        keep_yearly=3,
        keep_tags=["release", "manual"],
        prune=True,
        dry_run=True,
    )
    assert retention_args(policy) == [
        "--keep-last", "5",
        "--keep-hourly", "24",
        "--keep-daily", "7",
        "--keep-weekly", "4",
        "--keep-monthly", "12",
        "--keep-yearly", "3",
        "--keep-tag", "release",
        "--keep-tag", "manual",
        "--prune",
        "--dry-run",
    ]  # fmt: skip


def test_unset_and_zero_are_left_out_and_negative_keeps_all() -> None:
    policy = RetentionPolicy(name="p", keep_last=0, keep_daily=-1, keep_tags=[""])
    assert retention_args(policy) == ["--keep-daily", "unlimited"]


def test_prune_false_adds_nothing() -> None:
    assert retention_args(RetentionPolicy(name="p", keep_last=1, prune=False)) == [
        "--keep-last",
        "1",
    ]


def test_policy_without_keep_rule() -> None:
    assert not has_keep_rule(RetentionPolicy(name="p", prune=True))
    assert has_keep_rule(RetentionPolicy(name="p", keep_tags=["x"]))
    assert retention_args(RetentionPolicy(name="p", prune=True)) == ["--prune"]
