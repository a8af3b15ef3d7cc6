"""The VolumeSnapshotter driver's rules (stash-api.md §10), pure: which claims a target
snapshots, what the VolumeSnapshots are named and labelled, how far one has come, which
ones a retention policy deletes, and the claims a restore creates.

What it is for: `stash.controllers.volumesnapshot` (the operator takes CSI snapshots
itself; no sidecar, no restic Job) and its unit tests. Not for: talking to the
apiserver.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from stash.api import GROUP
from stash.api.common import RetentionPolicy
from stash.contract.sessions import (
    LABEL_COMPONENT,
    LABEL_INVOKER_NAME,
    LABEL_INVOKER_TYPE,
    LABEL_MANAGED_BY,
    label_value,
)
from stash.kube.client import Resource

__all__ = [
    "DEFAULT_CLASS_ANNOTATION",
    "ERROR_GRACE",
    "LABEL_SESSION",
    "LABEL_SOURCE_CLAIM",
    "SNAPSHOT_API_GROUP",
    "SNAPSHOT_CRDS",
    "VOLUMESNAPSHOTCLASSES",
    "VOLUMESNAPSHOTCONTENTS",
    "VOLUMESNAPSHOTS",
    "SnapshotState",
    "restore_claims",
    "snapshot_body",
    "snapshot_claims",
    "snapshot_name",
    "snapshot_state",
    "snapshots_to_forget",
]

SNAPSHOT_API_GROUP = "snapshot.storage.k8s.io"
VOLUMESNAPSHOTS = Resource(SNAPSHOT_API_GROUP, "v1", "volumesnapshots", "VolumeSnapshot")
VOLUMESNAPSHOTCONTENTS = Resource(
    SNAPSHOT_API_GROUP, "v1", "volumesnapshotcontents", "VolumeSnapshotContent", namespaced=False
)
VOLUMESNAPSHOTCLASSES = Resource(
    SNAPSHOT_API_GROUP, "v1", "volumesnapshotclasses", "VolumeSnapshotClass", namespaced=False
)
#: The CRDs the driver needs (external-snapshotter's client module, config/crd/).
SNAPSHOT_CRDS = (
    f"volumesnapshots.{SNAPSHOT_API_GROUP}",
    f"volumesnapshotcontents.{SNAPSHOT_API_GROUP}",
    f"volumesnapshotclasses.{SNAPSHOT_API_GROUP}",
)
DEFAULT_CLASS_ANNOTATION = f"{SNAPSHOT_API_GROUP}/is-default-class"
LABEL_SESSION = f"{GROUP}/backup-session"
LABEL_SOURCE_CLAIM = f"{GROUP}/source-pvc"
_MAX_NAME = 253


def _claim_volumes(pod_spec: Mapping[str, Any]) -> list[str]:
    """The claims a pod template's volumes name, in order, once each."""
    out: list[str] = []
    for volume in pod_spec.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and claim not in out:
            out.append(str(claim))
    return out


def snapshot_claims(
    kind: str, name: str, workload: Mapping[str, Any] | None, replicas: int | None
) -> list[str]:
    """The PVCs a target's backup snapshots (§10): a PVC itself; a Deployment's or
    DaemonSet's claim volumes; a StatefulSet's `<template>-<sts>-<ordinal>` for each
    ordinal below its replicas (`replicas` set: below that many) plus its claim volumes."""
    if kind == "PersistentVolumeClaim":
        return [name]
    spec = (workload or {}).get("spec") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    claims = _claim_volumes(pod_spec)
    if kind != "StatefulSet":
        return claims
    count = int(1 if spec.get("replicas") is None else spec["replicas"])
    if replicas is not None:
        count = min(count, replicas)
    templates = [
        str((t.get("metadata") or {}).get("name"))
        for t in spec.get("volumeClaimTemplates") or []
        if (t.get("metadata") or {}).get("name")
    ]
    ordinal = [f"{t}-{name}-{i}" for i in range(count) for t in templates]
    return ordinal + [c for c in claims if c not in ordinal]


def snapshot_name(claim: str, session_name: str) -> str:
    """`<pvc>-<session unix suffix>` (§12); a hand-named session's whole name instead."""
    head, _, tail = session_name.rpartition("-")
    suffix = tail if head and tail.isdigit() else session_name
    return f"{claim}-{suffix}"[:_MAX_NAME].rstrip("-.")


def snapshot_body(
    claim: str,
    namespace: str,
    session_name: str,
    invoker: tuple[str, str],
    class_name: str | None,
) -> dict[str, Any]:
    """The VolumeSnapshot one session takes of `claim` (`invoker` = (kind, name))."""
    spec: dict[str, Any] = {"source": {"persistentVolumeClaimName": claim}}
    if class_name:
        spec["volumeSnapshotClassName"] = class_name
    return {
        "apiVersion": f"{SNAPSHOT_API_GROUP}/v1",
        "kind": "VolumeSnapshot",
        "metadata": {
            "name": snapshot_name(claim, session_name),
            "namespace": namespace,
            "labels": {
                LABEL_MANAGED_BY: GROUP,
                LABEL_COMPONENT: "stash-backup",
                LABEL_INVOKER_TYPE: label_value(invoker[0]),
                LABEL_INVOKER_NAME: label_value(invoker[1]),
                LABEL_SESSION: label_value(session_name),
                LABEL_SOURCE_CLAIM: label_value(claim),
            },
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class SnapshotState:
    """How far one VolumeSnapshot has come."""

    phase: Literal["Pending", "Succeeded", "Failed"]
    error: str = ""
    size: str = ""


#: How long a VolumeSnapshot may carry `status.error` and still become ready (the
#: default of the operator's `volume_snapshot_error_grace`): the
#: snapshot-controller records transient failures there too (a conflict writing the
#: claim's finalizer under load) and retries them with backoff.
ERROR_GRACE = dt.timedelta(seconds=60)


def snapshot_state(
    snapshot: Mapping[str, Any], now: dt.datetime, grace: dt.timedelta = ERROR_GRACE
) -> SnapshotState:
    """Succeeded once `status.readyToUse`; Failed when `status.error` says why (its
    message as the snapshot-controller or the CSI driver wrote it) and the snapshot is
    older than `grace`; else Pending (a younger error is retried upstream)."""
    status = snapshot.get("status") or {}
    if status.get("readyToUse") is True:
        return SnapshotState("Succeeded", size=str(status.get("restoreSize") or ""))
    error = status.get("error") or {}
    if error.get("message"):
        made = (snapshot.get("metadata") or {}).get("creationTimestamp")
        young = made and now - _parse_time(str(made)) < grace
        return SnapshotState("Pending" if young else "Failed", str(error["message"]))
    return SnapshotState("Pending")


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _created(snapshot: Mapping[str, Any]) -> dt.datetime:
    """When a snapshot was taken: `status.creationTime`, else the object's creation."""
    meta = snapshot.get("metadata") or {}
    text = (snapshot.get("status") or {}).get("creationTime") or meta.get("creationTimestamp")
    if not text:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return _parse_time(str(text))


_BUCKETS: tuple[tuple[str, Callable[[dt.datetime], object]], ...] = (
    ("keep_hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("keep_daily", lambda t: (t.year, t.month, t.day)),
    ("keep_weekly", lambda t: t.isocalendar()[:2]),
    ("keep_monthly", lambda t: (t.year, t.month)),
    ("keep_yearly", lambda t: t.year),
)


def snapshots_to_forget(
    snapshots: Iterable[Mapping[str, Any]], policy: RetentionPolicy | None
) -> list[str]:
    """The names of the snapshots of ONE claim a policy deletes, restic-style (§10): newest
    first, the newest `keepLast` kept, and per hourly/daily/weekly/monthly/yearly bucket
    the newest of each of the newest N buckets. keepTags has no meaning here. A policy
    that keeps nothing by any rule deletes nothing."""
    if policy is None:
        return []
    rules = [(k, getattr(policy, k)) for k, _ in _BUCKETS if getattr(policy, k)]
    if not policy.keep_last and not rules:
        return []
    ordered = sorted(snapshots, key=_created, reverse=True)
    keep: set[int] = set(range(min(int(policy.keep_last or 0), len(ordered))))
    for field, count in rules:
        bucket_of = dict(_BUCKETS)[field]
        seen: list[object] = []
        for i, snap in enumerate(ordered):
            bucket = bucket_of(_created(snap))
            if bucket in seen:
                continue
            if len(seen) >= int(count):
                break
            seen.append(bucket)
            keep.add(i)
    return [
        str((s.get("metadata") or {}).get("name")) for i, s in enumerate(ordered) if i not in keep
    ]


def _substitute(value: Any, ordinal: int) -> Any:
    """`${POD_ORDINAL}` replaced in every string of a template (a copy)."""
    if isinstance(value, str):
        return value.replace("${POD_ORDINAL}", str(ordinal))
    if isinstance(value, list):
        return [_substitute(v, ordinal) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, ordinal) for k, v in value.items()}
    return value


def restore_claims(
    templates: Iterable[Mapping[str, Any]],
    replicas: int,
    namespace: str,
    workload: str | None,
    labels: Mapping[str, str],
) -> list[dict[str, Any]]:
    """The PVCs a VolumeSnapshotter restore creates (§10): for each ordinal below
    `replicas` and each template, the template with `${POD_ORDINAL}` filled in, named
    `<template>-<workload>-<ordinal>` when a StatefulSet `workload` is named (the claims
    it adopts), else the template's name."""
    out: list[dict[str, Any]] = []
    for ordinal in range(max(replicas, 1)):
        for template in templates:
            body = _substitute(copy.deepcopy(dict(template)), ordinal)
            meta = dict(body.get("metadata") or {})
            name = str(meta.get("name") or "")
            if workload:
                name = f"{name}-{workload}-{ordinal}"
            meta.update(name=name, namespace=namespace)
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": meta,
                    "spec": body.get("spec") or {},
                }
            )
    return out
