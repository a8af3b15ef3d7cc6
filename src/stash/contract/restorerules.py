"""Which restore rule a host follows (stash-api.md §1.1), the one answer for the restore
agent (`stash.agent.restore`) and the operator's restore Jobs (`stash.controllers.
provisioning`), so an init-container and a Job restore the same thing for a host.

Upstream (`util.RestoreOptionsForHost` in stashed/stash) walks the rules in order: a
rule naming the host in `targetHosts` wins; otherwise the last rule without
`targetHosts` (a catch-all) applies; when neither exists, the host gets empty restore
options and restores nothing, successfully. So with rules that name only some hosts
(and no catch-all) the other hosts of a StatefulSet or DaemonSet have nothing to
restore: they succeed without touching their data (docs/compatibility.md).

Not for: running restic (`stash.agent.restore`), or validating rules (`stash.validation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from stash.api.common import Rule

__all__ = ["RuleMatch", "job_host", "job_host_of", "match_rule", "rule_for_host"]


class RuleMatch(Enum):
    """How a host's rule was found."""

    NAMED = "named"
    """A rule lists the host in `targetHosts`."""
    CATCH_ALL = "catch-all"
    """No rule names the host; the rule without `targetHosts` applies."""
    UNNAMED = "unnamed"
    """Rules exist, none names the host and none is a catch-all: nothing to restore."""
    NO_RULES = "no-rules"
    """The restore has no rules at all."""


def match_rule(rules: Sequence[Rule], hostname: str) -> tuple[RuleMatch, Rule | None]:
    """The rule `hostname` follows and how it was found (module docstring)."""
    if not rules:
        return RuleMatch.NO_RULES, None
    for rule in rules:
        if hostname in (rule.target_hosts or []):
            return RuleMatch.NAMED, rule
    catch_all = [rule for rule in rules if not rule.target_hosts]
    if catch_all:
        # Upstream keeps the last catch-all it meets; validation allows only one.
        return RuleMatch.CATCH_ALL, catch_all[-1]
    return RuleMatch.UNNAMED, None


def rule_for_host(rules: Sequence[Rule], hostname: str) -> Rule | None:
    """The rule for `hostname`: one naming it in targetHosts, else the catch-all."""
    return match_rule(rules, hostname)[1]


def job_host(alias: str | None, ordinal: int | None) -> str:
    """The host a restore Job restores as: the target's alias (`host-0` without one), or
    `<alias>-<ordinal>` (`host-<ordinal>`) when it restores into volumeClaimTemplates
    (`ordinal` given)."""
    stem = alias or "host"
    if ordinal is None:
        return alias or f"{stem}-0"
    return f"{stem}-{ordinal}"


def job_host_of(alias: str | None, host: str) -> bool:
    """Whether `host` is one `job_host(alias, ...)` names."""
    if alias and host == alias:
        return True
    ordinal = host.removeprefix(f"{alias or 'host'}-")
    return ordinal != host and ordinal.isdigit()
