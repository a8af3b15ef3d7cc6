"""BackupBatch and RestoreBatch members as the operator and the agent both see them (§1.6).

What it is for: one reading of a batch for every side.

* `backup_members(batch)` — each member as the BackupConfiguration it stands for: the
  member's template (task, target, runtime settings, ...) with the batch's repository,
  driver, schedule, retention, pause, history limit, time-out and retries; kind
  `BackupBatch` and the batch's metadata, so the sidecar is injected with
  `--invoker-kind=BackupBatch --invoker-name=<batch>`, the Job builder writes the same
  into a Job, and `stash.inject`, `provisioning` and the agent work on it unchanged.
  Every member shares the batch's one Repository; its restic host is the member's
  `alias`, or its target's name when no alias is set (so two members never back up as
  the same `host-0`).
* `restore_members(batch)` — the same for a RestoreBatch (RestoreSession views).
* `member_index()` / `restore_member_index()` — which member an agent serves.
* `may_start()` — execution order: Sequential members start one after another.

A BackupBatch's global hooks are run by the operator (`stash.controllers.globalhooks`),
its members' hooks by their agents. A RestoreBatch's global hooks are not run yet:
validation refuses them (`GLOBAL_HOOKS_NOT_SUPPORTED`); its members' hooks do run.

Not for: phases or I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stash.api import BackupBatch, BackupConfiguration, RestoreBatch, RestoreSession
from stash.api.backupconfiguration import BackupConfigurationSpec, BackupConfigurationStatus
from stash.api.common import BackupTarget, RestoreTarget, TargetRef
from stash.api.restoresession import RestoreSessionSpec

__all__ = [
    "GLOBAL_HOOKS_NOT_SUPPORTED",
    "backup_members",
    "may_start",
    "member_alias",
    "member_index",
    "restore_member_index",
    "restore_members",
]

GLOBAL_HOOKS_NOT_SUPPORTED = (
    "global hooks are not run for a RestoreBatch yet: move spec.hooks to the members "
    "(spec.members[*].hooks), which their restore agents run"
)


def member_alias(target: BackupTarget | RestoreTarget | None) -> str | None:
    """A member's restic host base: its alias, else its target's name."""
    if target is None:
        return None
    return target.alias or (target.ref.name if target.ref else None)


def backup_members(batch: BackupBatch) -> list[BackupConfiguration]:
    """Each member as a BackupConfiguration of kind BackupBatch (module docstring)."""
    spec = batch.spec
    if spec is None:
        return []
    shared = spec.model_dump(
        exclude={"members", "hooks", "execution_order", "runtime_settings"}, exclude_none=True
    )
    status = None
    if batch.status is not None:
        status = BackupConfigurationStatus(
            observed_generation=batch.status.observed_generation,
            phase=batch.status.phase,
            conditions=batch.status.conditions,
        )
    out = []
    for member in spec.members or []:
        fields: dict[str, Any] = member.model_dump(exclude_none=True)
        if member.target is not None:
            target = member.target.model_copy(update={"alias": member_alias(member.target)})
            fields["target"] = target.model_dump(exclude_none=True)
        view = BackupConfiguration(
            kind="BackupBatch",
            metadata=batch.metadata.model_copy(),
            spec=BackupConfigurationSpec.model_validate({**shared, **fields}),
            status=status,
        )
        out.append(view)
    return out


def restore_members(batch: RestoreBatch) -> list[RestoreSession]:
    """Each member as a RestoreSession of kind RestoreBatch (module docstring)."""
    spec = batch.spec
    if spec is None:
        return []
    shared = spec.model_dump(exclude={"members", "hooks", "execution_order"}, exclude_none=True)
    out = []
    for member in spec.members or []:
        fields: dict[str, Any] = member.model_dump(exclude_none=True)
        if member.target is not None:
            target = member.target.model_copy(update={"alias": member_alias(member.target)})
            fields["target"] = target.model_dump(exclude_none=True)
        out.append(
            RestoreSession(
                kind="RestoreBatch",
                metadata=batch.metadata.model_copy(),
                spec=RestoreSessionSpec.model_validate({**shared, **fields}),
            )
        )
    return out


def _same(ref: TargetRef | None, kind: str, name: str, namespace: str, default_ns: str) -> bool:
    if ref is None:
        return False
    return ref.kind == kind and ref.name == name and (ref.namespace or default_ns) == namespace


def member_index(
    members: Sequence[BackupConfiguration | RestoreSession], kind: str, name: str, namespace: str
) -> int | None:
    """The index of the member whose target is `kind namespace/name` (None: no member)."""
    for i, m in enumerate(members):
        ref = m.spec.target.ref if m.spec and m.spec.target else None
        if _same(ref, kind, name, namespace, str(m.metadata.namespace)):
            return i
    return None


def claim_names(target: RestoreTarget | None) -> list[str]:
    """The PVC names a member restores into from volumeClaimTemplates (every ordinal)."""
    if target is None or not target.volume_claim_templates:
        return []
    replicas = int(target.replicas or 1)
    out: list[str] = []
    for template in target.volume_claim_templates:
        name = (template.metadata.name if template.metadata else None) or ""
        out.extend(name.replace("${POD_ORDINAL}", str(i)) for i in range(replicas))
    return out


def restore_member_index(
    members: Sequence[RestoreSession], kind: str, name: str, namespace: str
) -> int | None:
    """The member a restore agent serves: by target ref, or — for a Job restoring into
    new PVCs — by the claim it mounts (its `--target-name`)."""
    found = member_index(members, kind, name, namespace)
    if found is not None:
        return found
    if kind not in ("", "PersistentVolumeClaim"):
        return None
    for i, m in enumerate(members):
        if name in claim_names(m.spec.target if m.spec else None):
            return i
    return None


def may_start(sequential: bool, final: Sequence[bool]) -> list[bool]:
    """Which members may start: all (Parallel), or each once every earlier member is
    final (Sequential). `final[i]` says whether member i is done."""
    if not sequential:
        return [True] * len(final)
    out = []
    earlier_done = True
    for done in final:
        out.append(earlier_done)
        earlier_done = earlier_done and done
    return out
