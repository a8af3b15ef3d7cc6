"""A Repository's usage policy, the one rule admission, reconcilers and injection share."""

from __future__ import annotations

from typing import Any

from stash.api import Repository
from stash.contract.usage import usage_refusal


def _repo(policy: dict[str, Any] | None = None) -> Repository:
    spec: dict[str, Any] = {
        "backend": {"storageSecretName": "s", "s3": {"endpoint": "e", "bucket": "b"}}
    }
    if policy is not None:
        spec["usagePolicy"] = {"allowedNamespaces": policy}
    return Repository.model_validate(
        {"metadata": {"name": "repo", "namespace": "backups"}, "spec": spec}
    )


def test_a_repository_is_usable_from_its_own_namespace_only_by_default() -> None:
    assert usage_refusal(_repo(), "backups", None) is None
    refusal = usage_refusal(_repo(), "team-a", {})
    assert refusal is not None
    assert 'Repository backups/repo does not allow use from namespace "team-a"' in refusal
    assert "from: Same" in refusal
    assert usage_refusal(_repo({"from": "All"}), "team-a", None) is None


def test_a_selector_needs_the_namespace_labels_and_a_match() -> None:
    repo = _repo({"from": "Selector", "selector": {"matchLabels": {"team": "a"}}})
    assert usage_refusal(repo, "team-a", {"team": "a"}) is None
    assert usage_refusal(repo, "team-b", {"team": "b"}) is not None
    # unknown labels refuse (they used to skip the check)
    unknown = usage_refusal(repo, "team-a", None)
    assert unknown is not None and "are not known" in unknown
    expressions = _repo(
        {
            "from": "Selector",
            "selector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
        }
    )
    assert usage_refusal(expressions, "x", {"tier": "gold"}) is None
    assert usage_refusal(expressions, "x", {}) is not None
