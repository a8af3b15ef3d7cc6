"""A Repository's usage policy: may an invoker in a namespace use it (stash-api.md §2.3)?

What it is for: `usage_refusal(repository, namespace, labels)`, the one answer the
validating webhook (admission), the invoker reconcilers (the `RepositoryUsageAllowed`
condition), the injection (no agent for a refused invoker) and the grant of the agent's
access to a Repository in another namespace all use, so none of them can differ. A
Repository is always usable from its own namespace; from another one only as
`usagePolicy.allowedNamespaces` says (`Same` when unset), and with `from: Selector` only
when the invoker namespace's labels are known and match.

Not for: reading the Repository or the labels (the callers do).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stash.api import Repository

__all__ = ["selector_matches", "usage_refusal"]


def usage_refusal(
    repository: Repository, namespace: str, labels: Mapping[str, str] | None
) -> str | None:
    """Why an invoker in `namespace` may not use `repository` (None: it may).

    `labels` are `namespace`'s labels (None: unknown, which refuses `from: Selector`)."""
    repo_ns = str(repository.metadata.namespace or "")
    if repo_ns == namespace:
        return None
    policy = repository.spec.usage_policy if repository.spec else None
    allowed = policy.allowed_namespaces if policy else None
    mode = (allowed.from_ if allowed else None) or "Same"
    where = f"Repository {repo_ns}/{repository.metadata.name}"
    if mode == "All":
        return None
    if mode == "Selector":
        selector = allowed.selector if allowed else None
        if labels is None:
            return (
                f'{where} allows namespaces by label selector, and the labels of namespace "'
                f'{namespace}" are not known'
            )
        if selector is not None and selector_matches(selector.to_wire(), labels):
            return None
    return (
        f'{where} does not allow use from namespace "{namespace}" '
        f"(usagePolicy.allowedNamespaces.from: {mode})"
    )


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (wire form) matches `labels`; an unknown operator never
    matches."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True
