"""BackupSession reconciler (stash-api.md §5.4, phases §1.4).

Drives a session from Pending to a final phase without running any backup itself (the
agents write host stats into `status.targets[].stats`): defaults missing labels from
`spec.invoker`; skips when the invoker is missing, paused or not Ready, or another
session of the same invoker is Running; initiates targets (totalHosts, pre/post backup
actions); sets the deadline from `timeOut` and fails the session with DeadlineExceeded
when it passes; on completion cleans history per backupHistoryLimit and records the
metrics push, which makes the phase final; retries Failed sessions per retryConfig.

Every status write is computed from the *live* object (`update_status`), so host stats
written concurrently by agents are never overwritten.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pydantic import ValidationError

from stash import metrics
from stash.api.backupsession import BackupSessionStatus, BackupTargetStatus, HostBackupStats
from stash.api.common import TargetRef
from stash.contract import phases as P
from stash.contract.resources import BACKUPSESSIONS, TARGET_KINDS
from stash.contract.sessions import (
    LABEL_INVOKER_NAME,
    LABEL_INVOKER_TYPE,
    format_duration,
    history_to_delete,
    session_labels,
    total_hosts,
)
from stash.controllers.context import ControllerContext
from stash.controllers.executor import ensure_backup_executor
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, KubeError
from stash.kube.conditions import get_condition, is_true, set_condition
from stash.kube.controller import DONE, Result
from stash.kube.events import NORMAL, WARNING
from stash.kube.leader import LEASES
from stash.kube.status import update_status
from stash.validation import parse_duration

log = logging.getLogger(__name__)

PRE_ACTIONS = ["InitializeBackendRepository"]
POST_ACTIONS = ["ApplyRetentionPolicy", "VerifyRepositoryIntegrity", "SendRepositoryMetrics"]


HEARTBEAT_LABEL_SESSION = "stash.appscode.com/backup-session"
HEARTBEAT_LABEL_HOST = "stash.appscode.com/hostname"


@dataclass(frozen=True)
class _Facts:
    """What one pass learned from caches and the apiserver before writing status."""

    now: dt.datetime
    skip_reason: str | None
    target: BackupTargetStatus | None
    deadline: dt.datetime | None
    dead_hosts: tuple[tuple[str, str], ...] = ()
    """(hostname, error) of hosts whose executor stopped its heartbeat."""


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def invoker_key(obj: JSON) -> list[str]:
    """Index: `<Kind>/<namespace>/<name>` of a session's invoker (from its labels/spec)."""
    labels = obj["metadata"].get("labels") or {}
    inv = (obj.get("spec") or {}).get("invoker") or {}
    kind = labels.get(LABEL_INVOKER_TYPE) or inv.get("kind")
    name = labels.get(LABEL_INVOKER_NAME) or inv.get("name")
    if not kind or not name:
        return []
    return [f"{kind}/{obj['metadata']['namespace']}/{name}"]


class BackupSessionReconciler:
    """Moves BackupSessions through their phases."""

    name = "backupsession"

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx

    async def reconcile(self, key: str) -> Result:
        ctx = self.ctx
        obj = ctx.caches.backupsessions.get(key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return DONE
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        inv = (obj.get("spec") or {}).get("invoker") or {}
        invoker = None
        if inv.get("kind") == "BackupConfiguration" and inv.get("name"):
            invoker = ctx.caches.backupconfigurations.get(f"{ns}/{inv['name']}")
        if invoker is not None and await self._default_labels(obj, invoker):
            return DONE  # the label patch brings us back
        try:
            status = BackupSessionStatus.model_validate(obj.get("status") or {})
        except ValidationError as exc:
            log.warning("%s: unreadable status, leaving it alone: %s", key, exc)
            return DONE
        if status.phase in P.FINAL_SESSION_PHASES:
            return await self._retry(obj, status, invoker)

        now = ctx.now()
        if P.session_completed(status) or is_true(status.conditions, P.BACKUP_SKIPPED):
            await self._complete(obj, status, invoker, now)
            return DONE

        facts = await self._facts(obj, status, invoker, now)
        written = await update_status(
            ctx.kube, BACKUPSESSIONS, name, ns, lambda live: self._decide(live, facts)
        )
        if written is not None:
            new = BackupSessionStatus.model_validate(written.get("status") or {})
            if is_true(new.conditions, P.BACKUP_SKIPPED) or P.session_completed(new):
                return Result(requeue_after=0.01)
        waits: list[float] = []
        if facts.deadline is not None:
            waits.append(max((facts.deadline - now).total_seconds() + 0.05, 0.01))
        if status.targets:
            waits.append(ctx.heartbeat_timeout / 3)  # look at executor heartbeats again
        return Result(requeue_after=min(waits)) if waits else DONE

    # ------------------------------------------------------------------ reads
    async def _facts(
        self, obj: JSON, status: BackupSessionStatus, invoker: JSON | None, now: dt.datetime
    ) -> _Facts:
        meta = obj["metadata"]
        inv = (obj.get("spec") or {}).get("invoker") or {}
        skip = self._skip_reason(obj, status, invoker, inv)
        target: BackupTargetStatus | None = None
        deadline: dt.datetime | None = None
        if invoker is not None and skip is None:
            spec = invoker.get("spec") or {}
            if not status.targets:
                target = await self._initiate(obj, invoker, spec, meta["namespace"])
            created = _parse_time(meta.get("creationTimestamp")) or now
            if status.session_deadline is not None:
                deadline = status.session_deadline
            elif spec.get("timeOut"):
                try:
                    deadline = created + dt.timedelta(seconds=parse_duration(spec["timeOut"]))
                except ValueError:
                    deadline = None
        dead = await self._dead_hosts(obj, status, now) if status.targets else ()
        return _Facts(now=now, skip_reason=skip, target=target, deadline=deadline, dead_hosts=dead)

    async def _dead_hosts(
        self, obj: JSON, status: BackupSessionStatus, now: dt.datetime
    ) -> tuple[tuple[str, str], ...]:
        """Hosts whose executor's heartbeat Lease went stale before they reported."""
        meta = obj["metadata"]
        reported = {h.hostname for t in status.targets or [] for h in t.stats or []}
        try:
            leases = await self.ctx.kube.list(
                LEASES,
                meta["namespace"],
                label_selector=f"{HEARTBEAT_LABEL_SESSION}={meta['name']}",
            )
        except KubeError:
            return ()
        dead: list[tuple[str, str]] = []
        for lease in leases.get("items") or []:
            host = (lease["metadata"].get("labels") or {}).get(HEARTBEAT_LABEL_HOST)
            spec = lease.get("spec") or {}
            renewed = _parse_time(spec.get("renewTime") or spec.get("acquireTime"))
            if not host or host in reported or renewed is None:
                continue
            silent = (now - renewed).total_seconds()
            if silent >= self.ctx.heartbeat_timeout:
                dead.append(
                    (
                        host,
                        f"the backup executor {spec.get('holderIdentity') or '?'} stopped "
                        f"renewing its heartbeat {silent:.0f}s ago (killed or crashed "
                        "mid-backup); the next session will clear the stale repository lock",
                    )
                )
        return tuple(dead)

    def _skip_reason(
        self, obj: JSON, status: BackupSessionStatus, invoker: JSON | None, inv: JSON
    ) -> str | None:
        ns = obj["metadata"]["namespace"]
        if not inv.get("kind") or not inv.get("name"):
            return "spec.invoker is not set: a BackupSession needs an invoker kind and name"
        if inv.get("kind") != "BackupConfiguration":
            return f"invoker kind {inv.get('kind')} is not supported yet"
        if invoker is None or invoker["metadata"].get("deletionTimestamp"):
            return f"BackupConfiguration {ns}/{inv['name']} does not exist"
        spec = invoker.get("spec") or {}
        if spec.get("paused"):
            return f"backup invoker BackupConfiguration {ns}/{inv['name']} is paused"
        phase = (invoker.get("status") or {}).get("phase")
        if phase != "Ready":
            why = "; ".join(
                f"{c.get('type')}: {c.get('message')}"
                for c in (invoker.get("status") or {}).get("conditions") or []
                if c.get("status") != "True"
            )
            return f"BackupConfiguration {ns}/{inv['name']} is not ready (phase {phase})" + (
                f": {why}" if why else ""
            )
        if not status.targets:
            for other in self.ctx.caches.backupsessions.by_index(
                "invoker", f"BackupConfiguration/{ns}/{inv['name']}"
            ):
                if other["metadata"]["name"] == obj["metadata"]["name"]:
                    continue
                if (other.get("status") or {}).get("phase") == "Running":
                    return f'Previous BackupSession: {other["metadata"]["name"]} is "Running"'
        return None

    async def _initiate(
        self, session: JSON, invoker: JSON, spec: JSON, ns: str
    ) -> BackupTargetStatus:
        ref = dict((spec.get("target") or {}).get("ref") or {})
        ref.setdefault("namespace", ns)
        kind = str(ref.get("kind", ""))
        workload = None
        res = TARGET_KINDS.get(kind)
        if res is not None and kind in ("StatefulSet", "DaemonSet") and ref.get("name"):
            try:
                workload = await self.ctx.kube.get(res, str(ref["name"]), str(ref["namespace"]))
            except KubeError:
                workload = None
        ok, message = await ensure_backup_executor(self.ctx, session, invoker, ref, 0)
        conds = set_condition(
            None,
            P.BACKUP_EXECUTOR_ENSURED,
            ok,
            "SuccessfullyEnsuredBackupExecutor" if ok else "FailedToEnsureBackupExecutor",
            message,
        )
        return BackupTargetStatus(
            ref=TargetRef.model_validate(ref),
            total_hosts=total_hosts(kind, workload),
            pre_backup_actions=PRE_ACTIONS,
            post_backup_actions=POST_ACTIONS,
            conditions=conds,
        )

    # ------------------------------------------------------------------ writes
    def _decide(self, live: JSON, facts: _Facts) -> JSON | None:
        status = BackupSessionStatus.model_validate(live.get("status") or {})
        if status.phase in P.FINAL_SESSION_PHASES:
            return None
        conds = status.conditions
        # A session already running when its invoker becomes unready is left to finish.
        if facts.skip_reason and not status.targets:
            conds = set_condition(
                conds, P.BACKUP_SKIPPED, True, "SkippedTakingNewBackup", facts.skip_reason
            )
        if facts.target is not None and not status.targets:
            status.targets = [facts.target]
        for host, error in facts.dead_hosts:
            for t in status.targets or []:
                if any(h.hostname == host for h in t.stats or []):
                    break
                if len(t.stats or []) < (t.total_hosts or 0):
                    t.stats = [
                        *(t.stats or []),
                        HostBackupStats(hostname=host, phase="Failed", error=error),
                    ]
                    break
        if facts.deadline is not None:
            status.session_deadline = facts.deadline
            if facts.now >= facts.deadline and not is_true(conds, P.DEADLINE_EXCEEDED):
                conds = set_condition(
                    conds,
                    P.DEADLINE_EXCEEDED,
                    True,
                    "FailedToCompleteWithinDeadline",
                    f"the session did not complete by its deadline "
                    f"{facts.deadline.isoformat()} (spec.timeOut of the invoker)",
                )
        status.conditions = conds
        for t in status.targets or []:
            t.phase = P.target_phase(t)
        status.phase = P.backup_session_phase(status)
        return status.to_wire()

    async def _complete(
        self, obj: JSON, status: BackupSessionStatus, invoker: JSON | None, now: dt.datetime
    ) -> None:
        ctx = self.ctx
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        cleaned, clean_msg = await self._clean_history(obj, invoker)
        pushed, push_msg = True, "no Pushgateway configured; nothing to push"
        created = _parse_time(meta.get("creationTimestamp")) or now

        def finish(live: JSON) -> JSON | None:
            st = BackupSessionStatus.model_validate(live.get("status") or {})
            if st.phase in P.FINAL_SESSION_PHASES:
                return None
            c = set_condition(
                st.conditions,
                P.BACKUP_HISTORY_CLEANED,
                cleaned,
                "SuccessfullyCleanedBackupHistory" if cleaned else "FailedToCleanBackupHistory",
                clean_msg,
            )
            c = set_condition(
                c,
                P.METRICS_PUSHED,
                pushed,
                "SuccessfullyPushedMetrics" if pushed else "FailedToPushMetrics",
                push_msg,
            )
            st.conditions = c
            for t in st.targets or []:
                t.phase = P.target_phase(t)
            st.phase = P.backup_session_phase(st)
            st.session_duration = format_duration((now - created).total_seconds())
            return st.to_wire()

        written = await update_status(ctx.kube, BACKUPSESSIONS, name, ns, finish)
        if written is None:
            return
        phase = (written.get("status") or {}).get("phase")
        inv = (obj.get("spec") or {}).get("invoker") or {}
        if phase == "Succeeded":
            metrics.LAST_SUCCESS.labels(ns, inv.get("kind", ""), inv.get("name", "")).set(
                now.timestamp()
            )
        message = self._summary(written)
        await ctx.recorder.emit(
            written,
            NORMAL if phase in ("Succeeded", "Skipped") else WARNING,
            f"BackupSession{phase}",
            message,
        )

    def _summary(self, obj: JSON) -> str:
        status = BackupSessionStatus.model_validate(obj.get("status") or {})
        if status.phase == "Skipped":
            cond = get_condition(status.conditions, P.BACKUP_SKIPPED)
            return f"skipped: {cond.message if cond else ''}"
        problems = [
            f"{c.type}: {c.message}" for c in status.conditions or [] if c.status == "False"
        ]
        if is_true(status.conditions, P.DEADLINE_EXCEEDED):
            cond = get_condition(status.conditions, P.DEADLINE_EXCEEDED)
            problems.append(cond.message or "deadline exceeded" if cond else "deadline exceeded")
        for t in status.targets or []:
            for h in t.stats or []:
                if h.phase == "Failed":
                    problems.append(f"host {h.hostname}: {h.error}")
            got = len([h for h in t.stats or [] if h.phase])
            if t.total_hosts and got < t.total_hosts:
                problems.append(f"{t.total_hosts - got} of {t.total_hosts} hosts did not report")
        head = f"{status.phase} in {status.session_duration}"
        return head + (": " + "; ".join(problems) if problems else "")

    async def _clean_history(self, obj: JSON, invoker: JSON | None) -> tuple[bool, str]:
        keys = invoker_key(obj)
        if not keys:
            return True, "no invoker labels; nothing to clean"
        limit = 1
        if invoker is not None:
            value = (invoker.get("spec") or {}).get("backupHistoryLimit")
            limit = 1 if value is None else int(value)
        ns = obj["metadata"]["namespace"]
        kind, _, inv_name = keys[0].split("/", 2)
        try:
            # Read the invoker's sessions from the apiserver, not the cache: deleting
            # history must not act on a phase the cache has not caught up with yet.
            listing = await self.ctx.kube.list(
                BACKUPSESSIONS,
                ns,
                label_selector=f"{LABEL_INVOKER_TYPE}={kind},{LABEL_INVOKER_NAME}={inv_name}",
            )
        except KubeError as exc:
            return False, f"listing BackupSessions failed: {exc.message or exc}"
        siblings = listing.get("items") or []
        doomed = history_to_delete(siblings, limit, completing=obj["metadata"]["name"])
        try:
            for victim in doomed:
                await self.ctx.kube.delete(BACKUPSESSIONS, victim, ns, propagation="Background")
        except KubeError as exc:
            return False, f"deleting old BackupSessions failed: {exc.message or exc}"
        return True, f"kept the newest {limit}; deleted {len(doomed)} older session(s)"

    async def _retry(self, obj: JSON, status: BackupSessionStatus, invoker: JSON | None) -> Result:
        retry_left = int((obj.get("spec") or {}).get("retryLeft") or 0)
        if status.phase != "Failed" or retry_left <= 0 or status.retried or invoker is None:
            return DONE
        now = self.ctx.now()
        meta = obj["metadata"]
        if status.next_retry is None:
            delay_text = ((invoker.get("spec") or {}).get("retryConfig") or {}).get("delay")
            try:
                delay = parse_duration(delay_text) if delay_text else 0.0
            except ValueError:
                delay = 0.0
            when = now + dt.timedelta(seconds=delay)

            def plan(live: JSON) -> JSON | None:
                st = BackupSessionStatus.model_validate(live.get("status") or {})
                if st.next_retry is not None or st.retried:
                    return None
                st.next_retry = when
                return st.to_wire()

            await update_status(
                self.ctx.kube, BACKUPSESSIONS, meta["name"], meta["namespace"], plan
            )
            return Result(requeue_after=max(delay, 0.01))
        if now < status.next_retry:
            return Result(requeue_after=(status.next_retry - now).total_seconds() + 0.05)
        new_name = await create_backup_session(self.ctx.kube, invoker, now, retry_left - 1)

        def mark(live: JSON) -> JSON | None:
            st = BackupSessionStatus.model_validate(live.get("status") or {})
            if st.retried:
                return None
            st.retried = True
            return st.to_wire()

        await update_status(self.ctx.kube, BACKUPSESSIONS, meta["name"], meta["namespace"], mark)
        await self.ctx.recorder.emit(
            obj,
            NORMAL,
            "BackupSessionRetried",
            f"retrying as BackupSession {new_name} ({retry_left - 1} retries left after it)",
        )
        return DONE

    async def _default_labels(self, obj: JSON, invoker: JSON) -> bool:
        """Fill in invoker/target labels missing on a hand-made session (§5.3 quirk)."""
        meta = obj["metadata"]
        have = meta.get("labels") or {}
        spec = invoker.get("spec") or {}
        want = session_labels(
            str(invoker.get("kind", "BackupConfiguration")),
            invoker["metadata"]["name"],
            None,
            (spec.get("target") or {}).get("ref"),
            meta["namespace"],
        )
        missing = {k: v for k, v in want.items() if k not in have}
        if not missing:
            return False
        await self.ctx.kube.patch(
            BACKUPSESSIONS, meta["name"], {"metadata": {"labels": missing}}, meta["namespace"]
        )
        return True
