"""The metrics of a session's end (stash-api.md §7): what the operator publishes.

What it is for: `backup_session_metrics()` and `restore_session_metrics()`, called by
the session reconcilers once the phase a session ends in is known, before it is
written. They build the session and target families from the status and push them to
the configured Pushgateway (the agents push the host and repository families
themselves). With no Pushgateway configured they keep them instead, together with the
host families (from the hosts' stats in the status) and the repository families (from
the Repository's status, which the agent wrote), on the operator's /metrics
(`ControllerContext.session_metrics`). The `MetricsPushed` condition they return says
which happened; a push that failed is False with the reason, and never changes the
session's phase (`stash.contract.phases.ended`).

Not for: the families themselves (`stash.sessionmetrics`) or the phase rules.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry

from stash.api import BackupConfiguration, BackupSession, Repository, RestoreSession
from stash.api.backupsession import BackupSessionStatus, BackupTargetStatus
from stash.api.common import ObjectReference
from stash.api.restoresession import RestoreSessionStatus
from stash.contract import phases as P
from stash.contract.resources import REPOSITORIES
from stash.controllers.context import ControllerContext
from stash.kube.client import KubeError
from stash.kube.conditions import get_condition
from stash.restic import parse_bytes
from stash.sessionmetrics import (
    MetricLabels,
    RepositoryFacts,
    SessionOutcome,
    TargetOutcome,
    backend_location,
    backup_session_registry,
    duration_seconds,
    host_backup_registry,
    host_restore_registry,
    push,
    repository_registry,
    restore_session_registry,
    target_group,
)

__all__ = ["PROJECTED", "MetricsRecord", "backup_session_metrics", "restore_session_metrics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricsRecord:
    """The `MetricsPushed` condition of a session's end."""

    status: bool
    reason: str
    message: str


PROJECTED = MetricsRecord(True, "Projected", "")
"""Stands in for the condition while the final phase is computed, before the push
(the phase does not depend on how the push went)."""


def _exported(families: str) -> MetricsRecord:
    return MetricsRecord(
        True,
        "MetricsExportedByOperator",
        f"no Pushgateway configured: the {families} metrics are exported on the operator's "
        "/metrics",
    )


def _driver(value: object) -> str:
    return str(value or "Restic")


async def _publish(
    ctx: ControllerContext, labels: MetricLabels, registry: CollectorRegistry
) -> MetricsRecord | None:
    """Push `registry` when a Pushgateway is configured (the record); None: none is."""
    sink = ctx.session_metrics
    if sink.pushgateway_url is None:
        sink.local.add(labels.grouping(), registry)
        return None
    result = await push(sink.pushgateway_url, labels.grouping(), registry, sink.timeout)
    if result.ok:
        return MetricsRecord(True, "SuccessfullyPushedMetrics", f"session metrics {result.message}")
    log.warning("%s/%s: metrics not pushed: %s", labels.namespace, labels.invoker_name, result)
    return MetricsRecord(
        False, "FailedToPushMetrics", f"session metrics not pushed: {result.message}"
    )


def _target_outcome(target: BackupTargetStatus) -> TargetOutcome:
    ref = target.ref
    kind, name = (str(ref.kind or ""), str(ref.name or "")) if ref else ("", "")
    return TargetOutcome(
        kind=kind,
        group=target_group(kind, ref.api_version if ref else None),
        name=name,
        succeeded=P.target_phase(target) == "Succeeded",
        hosts=int(target.total_hosts or 0),
    )


async def backup_session_metrics(
    ctx: ControllerContext,
    session: BackupSession,
    status: BackupSessionStatus,
    invoker: BackupConfiguration | None,
    now: dt.datetime,
) -> MetricsRecord:
    """Publish the metrics of a BackupSession that ends with `status` (its final phase
    set); the `MetricsPushed` condition to record."""
    if status.phase == "Skipped":
        return MetricsRecord(True, "SessionSkipped", "the session was skipped: no metrics")
    ref = session.spec.invoker if session.spec else None
    spec = invoker.spec if invoker else None
    ns = str(session.metadata.namespace)
    labels = MetricLabels(
        invoker_kind=ref.kind if ref else "BackupConfiguration",
        invoker_name=ref.name if ref else "",
        namespace=ns,
        repository=(spec.repository.name if spec and spec.repository else "") or "",
        driver=_driver(spec.driver if spec else None),
    )
    created = session.metadata.creation_timestamp or now
    targets = tuple(_target_outcome(t) for t in status.targets or [])
    outcome = SessionOutcome(
        succeeded=status.phase == "Succeeded",
        seconds=max((now - created).total_seconds(), 0.0),
        finished_at=now.timestamp(),
        targets=targets,
    )
    pushed = await _publish(ctx, labels, backup_session_registry(labels, outcome))
    if pushed is not None:
        if labels.driver == "VolumeSnapshotter":  # no agent pushes these hosts: we do
            await _push_hosts(ctx, labels, status, targets)
        return pushed
    local = ctx.session_metrics.local
    for target, t in zip(status.targets or [], targets, strict=True):
        host_labels = replace(labels, target_kind=t.kind, target_group=t.group, target_name=t.name)
        for host in target.stats or []:
            hostname = host.hostname or ""
            local.add(host_labels.grouping(hostname), host_backup_registry(host_labels, host))
    if get_condition(status.conditions, P.REPOSITORY_METRICS_PUSHED) is not None and spec:
        facts = await _repository_facts(ctx, spec.repository, ns)
        if facts is not None:
            local.add(labels.grouping(), repository_registry(labels, facts))
    return _exported("session, target, host and repository")


async def _push_hosts(
    ctx: ControllerContext,
    labels: MetricLabels,
    status: BackupSessionStatus,
    targets: tuple[TargetOutcome, ...],
) -> None:
    """Push the host families of a VolumeSnapshotter session (one host per claim), as an
    agent does for its restic host; a failed push is logged, as the agent's is."""
    url = ctx.session_metrics.pushgateway_url
    if url is None:
        return
    for target, t in zip(status.targets or [], targets, strict=True):
        host_labels = replace(labels, target_kind=t.kind, target_group=t.group, target_name=t.name)
        for host in target.stats or []:
            grouping = host_labels.grouping(host.hostname or "")
            result = await push(
                url, grouping, host_backup_registry(host_labels, host), ctx.session_metrics.timeout
            )
            if not result.ok:
                log.warning("host metrics of %s not pushed: %s", host.hostname, result)


async def _repository_facts(
    ctx: ControllerContext, ref: ObjectReference | None, namespace: str
) -> RepositoryFacts | None:
    """What the Repository's status says, read live: the agent wrote it just before the
    host entry that ended the session, and the cache may not have it yet."""
    if ref is None or not ref.name:
        return None
    ns = ref.namespace or namespace
    try:
        repo = Repository.model_validate(await ctx.kube.get(REPOSITORIES, ref.name, ns))
    except (KubeError, ValueError) as exc:
        log.warning("repository metrics of %s/%s not exported: %s", ns, ref.name, exc)
        return None
    st = repo.status
    if st is None:
        return None
    provider, bucket, prefix = backend_location(repo.spec.backend if repo.spec else None)
    try:
        size = parse_bytes(st.total_size or "0 B")
    except ValueError:
        size = 0
    return RepositoryFacts(
        name=ref.name,
        namespace=ns,
        backend=provider,
        bucket=bucket,
        prefix=prefix,
        integrity=bool(st.integrity),
        size_bytes=size,
        snapshot_count=int(st.snapshot_count or 0),
        snapshots_removed=int(st.snapshots_removed_on_last_cleanup or 0),
    )


async def restore_session_metrics(
    ctx: ControllerContext, rs: RestoreSession, status: RestoreSessionStatus, now: dt.datetime
) -> MetricsRecord:
    """Publish the metrics of a RestoreSession that ends with `status` (its final phase
    set); the `MetricsPushed` condition to record."""
    spec = rs.spec
    ref = spec.target.ref if spec and spec.target else None
    kind, name = (str(ref.kind or ""), str(ref.name or "")) if ref else ("", "")
    labels = MetricLabels(
        invoker_kind="RestoreSession",
        invoker_name=str(rs.metadata.name),
        namespace=str(rs.metadata.namespace),
        repository=(spec.repository.name if spec and spec.repository else "") or "",
        target_kind=kind,
        target_group=target_group(kind, ref.api_version if ref else None),
        target_name=name,
        driver=_driver(spec.driver if spec else None),
    )
    ok = status.phase == "Succeeded"
    created = rs.metadata.creation_timestamp or now
    hosts = int(status.total_hosts or len(status.stats or []))
    outcome = SessionOutcome(
        succeeded=ok,
        seconds=max((now - created).total_seconds(), 0.0),
        finished_at=now.timestamp(),
        targets=(TargetOutcome(kind, labels.target_group, name, ok, hosts),),
    )
    pushed = await _publish(ctx, labels, restore_session_registry(labels, outcome))
    if pushed is not None:
        return pushed
    for host in status.stats or []:
        hostname = host.hostname or ""
        registry = host_restore_registry(
            labels, hostname, host.phase == "Succeeded", duration_seconds(host.duration)
        )
        ctx.session_metrics.local.add(labels.grouping(hostname), registry)
    return _exported("restore session, target and host")
