"""RetentionPolicy -> `restic forget` flags.

What it is for: `retention_args(policy)`, the pure 1:1 mapping of stash-api.md §1.1
(keepLast/Hourly/Daily/Weekly/Monthly/Yearly, keepTags, prune, dryRun) onto restic's
flags, and `has_keep_rule(policy)`: restic refuses `forget` without any keep rule, so
the driver treats such a policy as "nothing to forget" instead of running restic.

Not for: running forget (`driver`) or grouping choices: like Stash we never pass
`--host`, so restic's default grouping by host and paths applies (§5.7, §14.4).

Values: None and 0 mean "not set" (as in Stash); a negative count means keep all,
which restic spells `unlimited`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stash.api.common import RetentionPolicy

__all__ = ["has_keep_rule", "retention_args"]

_COUNTS = (
    ("keep_last", "--keep-last"),
    ("keep_hourly", "--keep-hourly"),
    ("keep_daily", "--keep-daily"),
    ("keep_weekly", "--keep-weekly"),
    ("keep_monthly", "--keep-monthly"),
    ("keep_yearly", "--keep-yearly"),
)


def _keep_args(policy: RetentionPolicy) -> list[str]:
    args: list[str] = []
    for attr, flag in _COUNTS:
        value: int | None = getattr(policy, attr)
        if value is None or value == 0:
            continue
        args += [flag, "unlimited" if value < 0 else str(value)]
    for tag in policy.keep_tags or ():
        if tag:
            args += ["--keep-tag", tag]
    return args


def has_keep_rule(policy: RetentionPolicy) -> bool:
    """Whether the policy sets any keep rule (restic's forget needs at least one)."""
    return bool(_keep_args(policy))


def retention_args(policy: RetentionPolicy) -> list[str]:
    """The `restic forget` arguments for `policy`, in a stable order.

    Example: keepLast=5, keepDaily=7, prune=True ->
    `["--keep-last", "5", "--keep-daily", "7", "--prune"]`.
    """
    args = _keep_args(policy)
    if policy.prune:
        args.append("--prune")
    if policy.dry_run:
        args.append("--dry-run")
    return args
