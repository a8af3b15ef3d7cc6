"""The VolumeSnapshotter driver (stash-api.md §10): the operator itself takes CSI
VolumeSnapshots of a target's claims and creates claims from them; nothing runs in a
pod, so no sidecar is injected and no restic Job is built.

* `snapshotter_check()` — the BackupConfiguration condition `VolumeSnapshotClassFound`:
  False, with what to install, when the snapshot CRDs or the class are missing;
* `initiate_snapshots()` — a session's target entry: one host per claim (§10: the host
  is the PVC), `BackupExecutorEnsured` saying which claims;
* `snapshot_progress()` — each pass of a running session: create the VolumeSnapshots
  not made yet, read how far each came (the snapshot's own error message on failure),
  and once every one of a target is ready, apply the retention policy per claim;
* `restore_from_snapshots()` — a RestoreSession's claims from its
  volumeClaimTemplates (their `dataSource` names the VolumeSnapshot); a host per claim,
  Succeeded once Bound.

Not for: the rules themselves (`stash.contract.volumesnapshots`, pure) or the session's
phase and deadline (the session reconcilers).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from stash.api import BackupConfiguration, BackupSession, RestoreSession
from stash.api.backupsession import (
    BackupSessionStatus,
    BackupTargetStatus,
    HostBackupStats,
    SnapshotStats,
)
from stash.api.common import TargetRef
from stash.api.restoresession import HostRestoreStats
from stash.contract import phases as P
from stash.contract import volumesnapshots as V
from stash.contract.resources import TARGET_KINDS
from stash.contract.sessions import LABEL_MANAGED_BY
from stash.controllers.conditions import Check
from stash.controllers.context import ControllerContext
from stash.kube.client import JSON, Conflict, KubeError, NotFound
from stash.kube.conditions import set_condition
from stash.kube.resources import CRDS, EVENTS, PVCS

log = logging.getLogger(__name__)

__all__ = [
    "POLL",
    "initiate_snapshots",
    "is_snapshotter",
    "restore_from_snapshots",
    "snapshot_progress",
    "snapshotter_check",
]

#: Answers to creating a VolumeSnapshot that trying again will not change: bad request,
#: forbidden, no such resource (the CRDs went), invalid.
_REFUSED = (400, 403, 404, 422)
#: Seconds between looks at VolumeSnapshots / restored claims while a session runs.
POLL = 1.0
INSTALL_HINT = (
    "install the CSI snapshot CRDs (external-snapshotter's client/config/crd), the "
    "snapshot-controller and a CSI driver with its csi-snapshotter sidecar"
)


def is_snapshotter(invoker: BackupConfiguration | RestoreSession | None) -> bool:
    """Whether an invoker's driver is VolumeSnapshotter."""
    return (
        invoker is not None
        and invoker.spec is not None
        and (invoker.spec.driver == "VolumeSnapshotter")
    )


async def _crds_missing(ctx: ControllerContext) -> list[str]:
    missing = []
    for crd in V.SNAPSHOT_CRDS:
        try:
            await ctx.kube.get(CRDS, crd)
        except NotFound:
            missing.append(crd)
    return missing


async def snapshotter_check(ctx: ControllerContext, bc: BackupConfiguration) -> Check:
    """VolumeSnapshotClassFound for a VolumeSnapshotter BackupConfiguration: the CRDs
    are installed and `target.snapshotClassName` (or a default class) exists."""
    kind = P.VOLUME_SNAPSHOT_CLASS_FOUND
    try:
        missing = await _crds_missing(ctx)
        if missing:
            message = f"CRDs {', '.join(missing)} are not installed: {INSTALL_HINT}"
            return Check(kind, False, "VolumeSnapshotCRDsMissing", message)
        target = bc.spec.target if bc.spec else None
        name = target.snapshot_class_name if target else None
        if name:
            await ctx.kube.get(V.VOLUMESNAPSHOTCLASSES, name)
            return Check(kind, True, "VolumeSnapshotClassAvailable", f"VolumeSnapshotClass {name}")
        classes = (await ctx.kube.list(V.VOLUMESNAPSHOTCLASSES)).get("items") or []
    except NotFound:
        message = (
            f"VolumeSnapshotClass {name} does not exist: create it for the CSI driver of "
            "the target's volumes"
        )
        return Check(kind, False, "VolumeSnapshotClassNotFound", message)
    except KubeError as exc:
        return Check(kind, "Unknown", "VolumeSnapshotClassUnknown", f"cannot read: {exc}")
    default = [
        c["metadata"]["name"]
        for c in classes
        if (c["metadata"].get("annotations") or {}).get(V.DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    if default:
        message = f"spec.target.snapshotClassName is unset: the default class {default[0]}"
        return Check(kind, True, "VolumeSnapshotClassAvailable", message)
    message = (
        "spec.target.snapshotClassName is unset and no VolumeSnapshotClass is annotated "
        f"{V.DEFAULT_CLASS_ANNOTATION}=true: name a class or mark one the default"
    )
    return Check(kind, False, "VolumeSnapshotClassNotFound", message)


async def _claims(ctx: ControllerContext, member: BackupConfiguration, ref: TargetRef) -> list[str]:
    """The claims member's target snapshots (`contract.volumesnapshots.snapshot_claims`)."""
    kind, name, ns = ref.kind or "", ref.name or "", str(ref.namespace)
    workload = None
    res = TARGET_KINDS.get(kind)
    if kind != "PersistentVolumeClaim" and res is not None and name:
        workload = await ctx.kube.get(res, name, ns)
    target = member.spec.target if member.spec else None
    replicas = target.replicas if target and target.replicas is not None else None
    return V.snapshot_claims(kind, name, workload, replicas)


async def initiate_snapshots(
    ctx: ControllerContext, member: BackupConfiguration, ref: TargetRef
) -> BackupTargetStatus:
    """The target entry of a VolumeSnapshotter member: a host per claim to snapshot."""
    try:
        claims = await _claims(ctx, member, ref)
    except KubeError as exc:
        claims, problem = [], f"cannot read {ref.kind} {ref.namespace}/{ref.name}: {exc}"
    else:
        problem = "" if claims else f"{ref.kind} {ref.namespace}/{ref.name} has no PVC to snapshot"
    ok = not problem
    message = problem or f"the operator takes VolumeSnapshots of {', '.join(claims)}"
    conds = set_condition(
        None,
        P.BACKUP_EXECUTOR_ENSURED,
        ok,
        "SuccessfullyEnsuredBackupExecutor" if ok else "FailedToEnsureBackupExecutor",
        message,
    )
    return BackupTargetStatus(ref=ref, total_hosts=len(claims), conditions=conds)


async def _snapshot(
    ctx: ControllerContext, session: BackupSession, member: BackupConfiguration, claim: str
) -> JSON:
    """The session's VolumeSnapshot of `claim`, created when it is not there yet."""
    ns, name = str(session.metadata.namespace), str(session.metadata.name)
    target = member.spec.target if member.spec else None
    body = V.snapshot_body(
        claim,
        ns,
        name,
        (member.kind, str(member.metadata.name)),
        target.snapshot_class_name if target else None,
    )
    try:
        return await ctx.kube.get(V.VOLUMESNAPSHOTS, body["metadata"]["name"], ns)
    except NotFound:
        pass
    try:
        return await ctx.kube.create(V.VOLUMESNAPSHOTS, body, ns)
    except Conflict:
        return await ctx.kube.get(V.VOLUMESNAPSHOTS, body["metadata"]["name"], ns)


async def _apply_retention(
    ctx: ControllerContext, member: BackupConfiguration, ns: str, claims: list[str]
) -> None:
    """Delete, per claim, the VolumeSnapshots (any maker's) the policy does not keep."""
    policy = member.spec.retention_policy if member.spec else None
    if policy is None:
        return
    items, _ = await ctx.kube.list_all(V.VOLUMESNAPSHOTS, ns)
    items = [s for s in items if not s["metadata"].get("deletionTimestamp")]  # going already
    for claim in claims:
        mine = [
            s
            for s in items
            if ((s.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName") == claim
        ]
        for name in V.snapshots_to_forget(mine, policy):
            log.info("retention policy %s: deleting VolumeSnapshot %s/%s", policy.name, ns, name)
            await ctx.kube.delete(V.VOLUMESNAPSHOTS, name, ns)


async def _overdue(ctx: ControllerContext, snap: JSON) -> str:
    """Why a snapshot still pending at the session's deadline is not ready."""
    name = snap["metadata"]["name"]
    content = (snap.get("status") or {}).get("boundVolumeSnapshotContentName")
    if not content:
        return (
            f"VolumeSnapshot {name} was not ready by the session's deadline: no "
            "VolumeSnapshotContent was made for it (is the snapshot-controller running?)"
        )
    try:
        driver = (await ctx.kube.get(V.VOLUMESNAPSHOTCONTENTS, content)).get("spec", {})
    except KubeError:
        driver = {}
    return (
        f"VolumeSnapshot {name} was not ready by the session's deadline: its "
        f"VolumeSnapshotContent {content} was not answered by CSI driver "
        f"{driver.get('driver', '?')} (is that driver with its csi-snapshotter running?)"
    )


async def _target_hosts(
    ctx: ControllerContext,
    session: BackupSession,
    member: BackupConfiguration,
    entry: BackupTargetStatus,
    now: dt.datetime,
    overdue: bool,
) -> list[HostBackupStats]:
    """The hosts of one running target that are final now (retention applied first
    when every snapshot is ready); `overdue`: the deadline passed, a snapshot still
    pending fails its host with what it waits for."""
    ref = entry.ref or TargetRef()
    ns = str(session.metadata.namespace)
    claims = await _claims(ctx, member, ref)
    reported = {s.hostname for s in entry.stats or []}
    hosts: list[HostBackupStats] = []
    for claim in claims:
        if claim in reported:
            continue
        try:
            snap = await _snapshot(ctx, session, member, claim)
        except KubeError as exc:
            if exc.status not in _REFUSED:
                raise  # transient: the next pass tries again
            error = f"the VolumeSnapshot of {claim} was refused: {exc}"
            hosts.append(HostBackupStats(hostname=claim, phase="Failed", error=error))
            continue
        grace = dt.timedelta(seconds=ctx.settings.volume_snapshot_error_grace)
        state = V.snapshot_state(snap, now, grace)
        if state.phase == "Pending" and overdue:
            state = V.SnapshotState("Failed", state.error or await _overdue(ctx, snap))
        if state.phase == "Pending":
            continue
        stats = SnapshotStats(name=str(snap["metadata"]["name"]), total_size=state.size or None)
        hosts.append(
            HostBackupStats(
                hostname=claim,
                phase=state.phase,
                snapshots=[stats] if state.phase == "Succeeded" else None,
                error=state.error or None,
            )
        )
    done = reported | {h.hostname for h in hosts}
    if hosts and all(h.phase == "Succeeded" for h in hosts) and all(c in done for c in claims):
        await _apply_retention(ctx, member, ns, claims)
    return hosts


async def snapshot_progress(
    ctx: ControllerContext,
    session: BackupSession,
    status: BackupSessionStatus,
    members: tuple[BackupConfiguration, ...],
    now: dt.datetime,
) -> tuple[tuple[int, HostBackupStats], ...]:
    """(target index, host) for each claim whose VolumeSnapshot is final now, over the
    running VolumeSnapshotter targets of `session` (creating missing snapshots); past
    the session's deadline every pending one is final (Failed, saying what it waits for)."""
    deadline = status.session_deadline
    overdue = deadline is not None and now >= deadline
    out: list[tuple[int, HostBackupStats]] = []
    for index, entry in enumerate(status.targets or []):
        if index >= len(members) or not is_snapshotter(members[index]):
            continue
        if entry.total_hosts is None or P.target_phase(entry) != "Running":
            continue
        try:
            hosts = await _target_hosts(ctx, session, members[index], entry, now, overdue)
        except KubeError as exc:
            log.warning(
                "%s/%s: VolumeSnapshots: %s", session.metadata.namespace, session.metadata.name, exc
            )
            continue
        out.extend((index, h) for h in hosts)
    return tuple(out)


async def restore_from_snapshots(
    ctx: ControllerContext, rs: RestoreSession, overdue: bool = False
) -> tuple[bool, str, int, list[HostRestoreStats]]:
    """Create the RestoreSession's claims (idempotent) and read them: (ok, message,
    hosts, the hosts final now: Succeeded when Bound, Failed when Lost, or when
    `overdue` (the deadline passed) and still unbound, with the provisioner's last
    warning about the claim)."""
    ns, name = str(rs.metadata.namespace), str(rs.metadata.name)
    target = rs.spec.target if rs.spec else None
    templates = [t.to_wire() for t in (target.volume_claim_templates if target else None) or []]
    if not templates:
        return False, "a VolumeSnapshotter restore needs spec.target.volumeClaimTemplates", 0, []
    ref = target.ref if target else None
    workload = ref.name if ref is not None and ref.kind == "StatefulSet" else None
    labels = {LABEL_MANAGED_BY: "stash.appscode.com", "stash.appscode.com/restore-session": name}
    claims = V.restore_claims(
        templates, int(target.replicas or 1) if target else 1, ns, workload, labels
    )
    stats: list[HostRestoreStats] = []
    try:
        for claim in claims:
            live = await _ensure_claim(ctx, claim, ns)
            phase = (live.get("status") or {}).get("phase")
            host = claim["metadata"]["name"]
            if phase == "Bound":
                stats.append(HostRestoreStats(hostname=host, phase="Succeeded"))
            elif phase == "Lost":
                stats.append(
                    HostRestoreStats(
                        hostname=host, phase="Failed", error="the claim lost its volume"
                    )
                )
            elif overdue:
                error = await _unbound(ctx, live)
                stats.append(HostRestoreStats(hostname=host, phase="Failed", error=error))
    except KubeError as exc:
        return False, f"cannot create the claims to restore: {exc}", len(claims), []
    names = ", ".join(c["metadata"]["name"] for c in claims)
    return True, f"the operator creates {names} from VolumeSnapshots", len(claims), stats


async def _unbound(ctx: ControllerContext, claim: JSON) -> str:
    """Why a claim is not Bound at the deadline: the newest Warning Event about it (the
    provisioner's ProvisioningFailed says what went wrong with its snapshot), if any."""
    meta = claim["metadata"]
    why = f"claim {meta['name']} was not Bound by the restore's deadline"
    try:
        events = await ctx.kube.list(
            EVENTS, meta["namespace"], field_selector=f"involvedObject.uid={meta['uid']}"
        )
    except KubeError:
        return why
    warnings = [e for e in events.get("items") or [] if e.get("type") == "Warning"]
    if not warnings:
        return why
    last = max(warnings, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return f"{why}: {last.get('reason')}: {last.get('message')}"


async def _ensure_claim(ctx: ControllerContext, claim: dict[str, Any], ns: str) -> JSON:
    try:
        return await ctx.kube.get(PVCS, claim["metadata"]["name"], ns)
    except NotFound:
        pass
    try:
        return await ctx.kube.create(PVCS, claim, ns)
    except Conflict:
        return await ctx.kube.get(PVCS, claim["metadata"]["name"], ns)
