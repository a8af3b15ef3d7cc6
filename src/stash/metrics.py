"""Prometheus metric families of the operator (served on its /metrics endpoint).

Session metrics pushed to a Pushgateway by agents (stash-api.md §7) live with the agent;
these are the operator's own: reconciles, queues, watches, schedules and sessions. The
Kubernetes plumbing (`stash.kube`) names no family: the operator hands it the observers
at the end of this module.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_TOTAL = Counter(
    "stash_operator_reconcile_total", "Reconciles run, per controller", ["controller"]
)
RECONCILE_ERRORS = Counter(
    "stash_operator_reconcile_errors_total",
    "Reconciles that failed, per controller",
    ["controller"],
)
RECONCILE_SECONDS = Histogram(
    "stash_operator_reconcile_duration_seconds",
    "Time spent in one reconcile, per controller",
    ["controller"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_DEPTH = Gauge("stash_operator_queue_depth", "Keys waiting in a work queue", ["controller"])
WATCH_FAILURES = Counter(
    "stash_operator_watch_failures_total",
    "Failed lists or watches per resource (a watch that simply ends is no failure)",
    ["resource"],
)
SCHEDULED_SESSIONS = Counter(
    "stash_operator_scheduled_sessions_total",
    "BackupSessions created by the cron engine",
    ["namespace", "invoker_kind", "invoker_name"],
)
SESSIONS_BY_PHASE = Gauge(
    "stash_operator_backup_sessions", "BackupSessions by phase (in the cache)", ["phase"]
)
LAST_SUCCESS = Gauge(
    "stash_operator_last_successful_backup_timestamp_seconds",
    "Completion time of the invoker's last Succeeded BackupSession",
    ["namespace", "invoker_kind", "invoker_name"],
)
IS_LEADER = Gauge("stash_operator_is_leader", "1 while this replica holds the leader lease")
TICK_LAG = Histogram(
    "stash_operator_tick_to_session_seconds",
    "From a schedule's fire time to its BackupSession being created",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


class ControllerObserver:
    """The reconcile and queue families, as `stash.kube.controller.ControllerMetrics`."""

    def reconciled(self, controller: str, seconds: float, failed: bool) -> None:
        """Count one reconcile (and its failure) and observe its duration. The error
        counter exists from the first reconcile on, at 0 until one fails, so rates and
        dashboards see a series rather than nothing."""
        RECONCILE_TOTAL.labels(controller).inc()
        errors = RECONCILE_ERRORS.labels(controller)
        if failed:
            errors.inc()
        RECONCILE_SECONDS.labels(controller).observe(seconds)

    def queue_depth(self, controller: str, depth: int) -> None:
        """Set the queue depth of `controller`."""
        QUEUE_DEPTH.labels(controller).set(depth)


class _Resource(Protocol):
    @property
    def plural(self) -> str: ...


def watch_failed(resource: _Resource) -> None:
    """An informer's list or watch failed (`resource` has a `plural`)."""
    WATCH_FAILURES.labels(resource.plural).inc()


def leader_changed(leading: bool) -> None:
    """This replica started (True) or stopped (False) leading."""
    IS_LEADER.set(1 if leading else 0)
