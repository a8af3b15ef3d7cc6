"""Session metrics (stash-api.md §7): the families and where they go.

What it is for: the families of backup and restore sessions, their targets, hosts and
repositories under both name sets (`families`), and sending them to a Pushgateway or
keeping them for the operator's /metrics (`publish`). The operator (session and target
families at a session's end) and the agent (host and repository families) both build
and push through here, so the two can never name or label a family differently.

Not for: the operator's own families (`stash.metrics`), or the conditions a push is
recorded in (the session reconcilers, the agent's post-backup actions).
"""

from __future__ import annotations

from stash.sessionmetrics.families import (
    FAMILIES,
    Family,
    MetricLabels,
    RepositoryFacts,
    SessionOutcome,
    TargetOutcome,
    backend_location,
    backup_session_registry,
    duration_seconds,
    host_backup_registry,
    host_restore_registry,
    repository_registry,
    restore_session_registry,
    target_group,
)
from stash.sessionmetrics.publish import (
    DEFAULT_PUSH_TIMEOUT,
    LocalGateway,
    PushOutcome,
    SessionMetricsSink,
    grouping_path,
    push,
    shown_url,
)

__all__ = [
    "DEFAULT_PUSH_TIMEOUT",
    "FAMILIES",
    "Family",
    "LocalGateway",
    "MetricLabels",
    "PushOutcome",
    "RepositoryFacts",
    "SessionMetricsSink",
    "SessionOutcome",
    "TargetOutcome",
    "backend_location",
    "backup_session_registry",
    "duration_seconds",
    "grouping_path",
    "host_backup_registry",
    "host_restore_registry",
    "push",
    "repository_registry",
    "restore_session_registry",
    "shown_url",
    "target_group",
]
