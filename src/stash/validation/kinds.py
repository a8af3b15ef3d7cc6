"""The rules of each Stash kind, over its parsed model.

Not for: parsing raw JSON (`stash.validation.validate` does that and dispatches here).
"""

from __future__ import annotations

from stash.api import (
    BackupBatch,
    BackupBlueprint,
    BackupConfiguration,
    BackupSession,
    Function,
    Repository,
    RestoreBatch,
    RestoreSession,
    Task,
)
from stash.contract.batches import GLOBAL_HOOKS_NOT_SUPPORTED, member_alias
from stash.validation.checks import (
    check_backend,
    check_backup_template,
    check_duration,
    check_hooks,
    check_non_negative,
    check_repository_ref,
    check_restore_template,
    check_retention,
    check_rules,
    check_schedule,
)
from stash.validation.report import Report, ValidationFacts, Verdict


def validate_backup_configuration(
    bc: BackupConfiguration,
    old: BackupConfiguration | None = None,
    facts: ValidationFacts | None = None,
) -> Verdict:
    """Rules for a BackupConfiguration (§1.3); `old` is the stored object on UPDATE."""
    known = facts or ValidationFacts()
    r = Report()
    spec = bc.spec
    if spec is None:
        r.error("spec", "required")
        return r.verdict()
    ns = bc.metadata.namespace
    check_schedule(r, "spec.schedule", spec.schedule)
    check_repository_ref(
        r, "spec.repository.name", spec.repository.name if spec.repository else None, spec.driver
    )
    check_backup_template(r, "spec", spec, ns, spec.driver, known)
    check_retention(r, "spec.retentionPolicy", spec.retention_policy)
    check_non_negative(r, "spec.backupHistoryLimit", spec.backup_history_limit)
    check_duration(r, "spec.timeOut", spec.time_out)
    if spec.retry_config:
        check_non_negative(r, "spec.retryConfig.maxRetry", spec.retry_config.max_retry)
        check_duration(r, "spec.retryConfig.delay", spec.retry_config.delay, positive=False)
    was_ready = old is not None and old.status is not None and old.status.phase == "Ready"
    if was_ready and old is not None and old.spec is not None and old.spec.target != spec.target:
        r.error(
            "spec.target",
            "cannot change while the BackupConfiguration is Ready; create a new "
            "BackupConfiguration for the new target (or delete and re-create this one)",
        )
    return r.verdict()


def validate_restore_session(
    rs: RestoreSession, old: RestoreSession | None = None, facts: ValidationFacts | None = None
) -> Verdict:
    """Rules for a RestoreSession (§1.5, rules §1.1)."""
    known = facts or ValidationFacts()
    r = Report()
    spec = rs.spec
    if spec is None:
        r.error("spec", "required")
        return r.verdict()
    ns = rs.metadata.namespace
    check_repository_ref(
        r, "spec.repository.name", spec.repository.name if spec.repository else None, spec.driver
    )
    check_restore_template(r, "spec", spec, ns, spec.driver, known)
    if spec.rules:
        if spec.target is not None and spec.target.rules:
            r.error(
                "spec.rules",
                "deprecated and spec.target.rules is also set; keep only spec.target.rules",
            )
        check_rules(r, "spec.rules", spec.rules)
    check_duration(r, "spec.timeOut", spec.time_out)
    return r.verdict()


def validate_repository(repo: Repository, old: Repository | None = None) -> Verdict:
    """Rules for a Repository (§2.3): one backend, its required fields, wipeOut, mountPath."""
    r = Report()
    spec = repo.spec
    if spec is None:
        r.error("spec", "required")
        return r.verdict()
    check_backend(r, "spec.backend", spec.backend, spec.wipe_out)
    allowed = spec.usage_policy.allowed_namespaces if spec.usage_policy else None
    if allowed is not None and allowed.from_ == "Selector" and allowed.selector is None:
        r.error("spec.usagePolicy.allowedNamespaces.selector", "required when from is Selector")
    return r.verdict()


def validate_backup_session(bs: BackupSession, old: BackupSession | None = None) -> Verdict:
    """Rules for a BackupSession (§1.4): an invoker, and a spec that never changes."""
    r = Report()
    invoker = bs.spec.invoker if bs.spec else None
    if invoker is None:
        r.error("spec.invoker", "required: the BackupConfiguration or BackupBatch to run")
    else:
        if invoker.kind not in ("BackupConfiguration", "BackupBatch"):
            r.error(
                "spec.invoker.kind",
                f'must be BackupConfiguration or BackupBatch, not "{invoker.kind}"',
            )
        if not invoker.name:
            r.error("spec.invoker.name", "required")
        if invoker.api_group not in (None, "", "stash.appscode.com"):
            r.error(
                "spec.invoker.apiGroup", f'must be stash.appscode.com, not "{invoker.api_group}"'
            )
    if bs.spec is not None:
        check_non_negative(r, "spec.retryLeft", bs.spec.retry_left)
    if old is not None and (old.spec.to_wire() if old.spec else {}) != (
        bs.spec.to_wire() if bs.spec else {}
    ):
        r.error("spec", "is immutable; create a new BackupSession instead")
    return r.verdict()


def validate_backup_batch(
    batch: BackupBatch, old: BackupBatch | None = None, facts: ValidationFacts | None = None
) -> Verdict:
    """Rules for a BackupBatch (§1.6): each member as a BackupConfiguration target."""
    known = facts or ValidationFacts()
    r = Report()
    spec = batch.spec
    if spec is None:
        r.error("spec", "required")
        return r.verdict()
    ns = batch.metadata.namespace
    if not spec.members:
        r.error("spec.members", "at least one member is required")
    aliases: dict[str, int] = {}
    for i, member in enumerate(spec.members or []):
        check_backup_template(r, f"spec.members[{i}]", member, ns, spec.driver, known)
        alias = member_alias(member.target) or ""
        if alias in aliases:
            r.warn(
                f"spec.members[{i}] and spec.members[{aliases[alias]}] share one repository "
                f'with the same alias "{alias}"; their snapshots will look like one host\'s'
            )
        aliases.setdefault(alias, i)
    check_schedule(r, "spec.schedule", spec.schedule)
    check_repository_ref(
        r, "spec.repository.name", spec.repository.name if spec.repository else None, spec.driver
    )
    check_retention(r, "spec.retentionPolicy", spec.retention_policy)
    check_non_negative(r, "spec.backupHistoryLimit", spec.backup_history_limit)
    check_duration(r, "spec.timeOut", spec.time_out)
    check_hooks(r, "spec.hooks", spec.hooks)
    return r.verdict()


def validate_restore_batch(
    batch: RestoreBatch, old: RestoreBatch | None = None, facts: ValidationFacts | None = None
) -> Verdict:
    """Rules for a RestoreBatch (§1.6): each member as a RestoreSession target."""
    known = facts or ValidationFacts()
    r = Report()
    spec = batch.spec
    if spec is None:
        r.error("spec", "required")
        return r.verdict()
    ns = batch.metadata.namespace
    if not spec.members:
        r.error("spec.members", "at least one member is required")
    for i, member in enumerate(spec.members or []):
        check_restore_template(r, f"spec.members[{i}]", member, ns, spec.driver, known)
    if spec.hooks is not None and spec.hooks.to_wire():
        r.error("spec.hooks", GLOBAL_HOOKS_NOT_SUPPORTED)
    check_repository_ref(
        r, "spec.repository.name", spec.repository.name if spec.repository else None, spec.driver
    )
    check_duration(r, "spec.timeOut", spec.time_out)
    check_hooks(r, "spec.hooks", spec.hooks)
    return r.verdict()


def validate_backup_blueprint(bp: BackupBlueprint, old: BackupBlueprint | None = None) -> Verdict:
    """Rules for a BackupBlueprint (§1.7): its backend, schedule, retention and hooks."""
    r = Report()
    spec = bp.spec
    if spec is None:
        r.error("spec", "required")
        return r.verdict()
    check_backend(r, "spec.backend", spec.backend, spec.wipe_out)
    check_schedule(r, "spec.schedule", spec.schedule)
    check_retention(r, "spec.retentionPolicy", spec.retention_policy)
    check_non_negative(r, "spec.backupHistoryLimit", spec.backup_history_limit)
    check_duration(r, "spec.timeOut", spec.time_out)
    check_hooks(r, "spec.hooks", spec.hooks)
    return r.verdict()


def validate_task(task: Task, old: Task | None = None) -> Verdict:
    r = Report()
    if not (task.spec and task.spec.steps):
        r.error("spec.steps", "at least one step (a Function name) is required")
    return r.verdict()


def validate_function(fn: Function, old: Function | None = None) -> Verdict:
    return Verdict()
