"""The workload kinds and the one answer to "does this invoker run in a sidecar or a Job?".

What it is for: `WORKLOADS` (kind -> `Resource`), the kinds whose pod template gets the
agent, and `runs_in_workload()`, the predicate that the webhook, the workload
reconciler, the executors and validation all call, so the answer cannot differ between
them (stash-api.md §0).

Not for: what is injected (`stash.inject`) or how a Job is built (`stash.controllers`).
"""

from __future__ import annotations

from typing import Literal

from stash.kube.client import Resource
from stash.kube.resources import (
    DAEMONSETS,
    DEPLOYMENTCONFIGS,
    DEPLOYMENTS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    STATEFULSETS,
)

__all__ = [
    "WORKLOADS",
    "WORKLOAD_KINDS",
    "WORKLOAD_RESOURCES",
    "ExecutionModel",
    "execution_model",
    "runs_in_workload",
]

#: Kinds whose pod template gets the agent (sidecar / init-container model), by kind.
WORKLOADS: dict[str, Resource] = {
    r.kind: r
    for r in (
        DEPLOYMENTS,
        STATEFULSETS,
        DAEMONSETS,
        REPLICASETS,
        REPLICATIONCONTROLLERS,
        DEPLOYMENTCONFIGS,
    )
}
WORKLOAD_KINDS = frozenset(WORKLOADS)

#: The same resources by plural, as an AdmissionReview names them.
WORKLOAD_RESOURCES: dict[str, Resource] = {r.plural: r for r in WORKLOADS.values()}


ExecutionModel = Literal["workload", "job", "volume-snapshot"]


def execution_model(
    driver: str | None, task_name: str | None, target_kind: str | None
) -> ExecutionModel:
    """Where an invoker's work runs (stash-api.md §0):

    * `volume-snapshot`: driver VolumeSnapshotter (the CSI snapshot path, no restic);
    * `workload`: driver Restic (or unset), no Task named, a workload target: the agent
      runs inside the target's pods (sidecar for backup, init-container for restore);
    * `job`: everything else (stand-alone PVC, database, any named Task): a Job.
    """
    if driver == "VolumeSnapshotter":
        return "volume-snapshot"
    if task_name or target_kind not in WORKLOAD_KINDS:
        return "job"
    return "workload"


def runs_in_workload(driver: str | None, task_name: str | None, target_kind: str | None) -> bool:
    """True when the agent runs inside the target's pods (`execution_model` = workload)."""
    return execution_model(driver, task_name, target_kind) == "workload"
