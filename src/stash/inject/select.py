"""Which invoker a workload gets, and the hash and record of what was applied.

Not for: changing objects (see `stash.inject`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

from stash.api import BackupConfiguration, RestoreSession
from stash.contract.autobackup import LABEL_AUTO_BACKUP
from stash.contract.workloads import runs_in_workload

# Fields of a BackupConfiguration spec that only the operator and the scheduler read.
# Changing them must not restart the workload's pods, so they stay out of the hash.
_OPERATOR_ONLY_FIELDS = frozenset(
    {"schedule", "paused", "retentionPolicy", "backupHistoryLimit", "timeOut", "retryConfig"}
)


def uses_sidecar_model(invoker: BackupConfiguration | RestoreSession) -> bool:
    """True when the invoker runs inside its target's pods (sidecar / init-container).

    That is `stash.contract.workloads.runs_in_workload` for a named target, and the
    invoker is not being deleted.
    """
    spec = invoker.spec
    if spec is None or invoker.metadata.deletion_timestamp is not None:
        return False
    ref = spec.target.ref if spec.target else None
    if ref is None or not ref.name:
        return False
    return runs_in_workload(spec.driver, spec.task.name if spec.task else None, ref.kind)


def _targets(
    invoker: BackupConfiguration | RestoreSession, kind: str, namespace: str, name: str
) -> bool:
    spec = invoker.spec
    ref = spec.target.ref if spec and spec.target else None
    if ref is None:
        return False
    ref_ns = ref.namespace or invoker.metadata.namespace
    return ref.kind == kind and ref.name == name and ref_ns == namespace


_Invoker = TypeVar("_Invoker", BackupConfiguration, RestoreSession)


def _newest(candidates: list[_Invoker]) -> _Invoker | None:
    if not candidates:
        return None

    def age_key(inv: _Invoker) -> tuple[str, str]:
        created = inv.metadata.creation_timestamp
        return (created.isoformat() if created else "", inv.metadata.name or "")

    return max(candidates, key=age_key)


def select_backup_invoker(
    invokers: Iterable[BackupConfiguration], kind: str, namespace: str, name: str
) -> BackupConfiguration | None:
    """The newest sidecar-model BackupConfiguration targeting `kind namespace/name`."""
    return _newest(
        [i for i in invokers if uses_sidecar_model(i) and _targets(i, kind, namespace, name)]
    )


def select_restore_invoker(
    invokers: Iterable[RestoreSession], kind: str, namespace: str, name: str
) -> RestoreSession | None:
    """The newest init-container-model RestoreSession targeting `kind namespace/name`."""
    return _newest(
        [i for i in invokers if uses_sidecar_model(i) and _targets(i, kind, namespace, name)]
    )


def is_auto_backup(invoker: BackupConfiguration) -> bool:
    """Whether auto-backup made this BackupConfiguration (its label says so)."""
    return (invoker.metadata.labels or {}).get(LABEL_AUTO_BACKUP) == "true"


def auto_backup_invoker(
    planned: BackupConfiguration | None,
    annotated: bool,
    stored: Iterable[BackupConfiguration],
    kind: str,
    namespace: str,
    name: str,
) -> BackupConfiguration | None:
    """The auto-backup invoker of a workload: the one its annotations resolve to
    (`planned`); while they name a blueprint but do not resolve (bad input), the one
    auto-backup made before, so a bad edit changes nothing; none without the annotation."""
    if not annotated:
        return None
    if planned is not None:
        return planned
    return select_backup_invoker([i for i in stored if is_auto_backup(i)], kind, namespace, name)


def choose_backup_invoker(
    explicit: Iterable[BackupConfiguration],
    auto: BackupConfiguration | None,
    kind: str,
    namespace: str,
    name: str,
) -> BackupConfiguration | None:
    """The invoker whose sidecar a workload carries: the newest one written for it (a
    BackupConfiguration, or a BackupBatch member's view) wins over auto-backup's, so
    annotating a workload never displaces a backup someone set up by hand. Auto-backup's
    stored BackupConfigurations among `explicit` are skipped: `auto` stands for them."""
    chosen = select_backup_invoker(
        [i for i in explicit if not is_auto_backup(i)], kind, namespace, name
    )
    if chosen is not None or auto is None:
        return chosen
    return select_backup_invoker([auto], kind, namespace, name)


def repository_key(invoker: BackupConfiguration | RestoreSession) -> str | None:
    """`namespace/name` of the invoker's Repository (None when it names none)."""
    repo = invoker.spec.repository if invoker.spec else None
    if repo is None:
        return None
    return f"{repo.namespace or invoker.metadata.namespace}/{repo.name}"


def _fnv64a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def invoker_hash(invoker: BackupConfiguration | RestoreSession) -> str:
    """FNV-64a (decimal) of the invoker spec fields the injected agent depends on.

    A BackupConfiguration's schedule, pause flag, retention, history limit, timeout and
    retries are left out: the operator acts on them, so changing them restarts no pod.
    """
    spec = invoker.spec.to_wire() if invoker.spec else {}
    if isinstance(invoker, BackupConfiguration):
        spec = {k: v for k, v in spec.items() if k not in _OPERATOR_ONLY_FIELDS}
    return str(_fnv64a(_canonical(spec)))


def last_applied(invoker: BackupConfiguration | RestoreSession) -> str:
    """The invoker as recorded in the last-applied annotation: which one (kind, name), not
    its spec. Removal and repair need no more (the pod template carries `invoker_hash`),
    and the spec — env values included — must not be copied into a workload that other
    people may read, nor into every admission response."""
    doc = {
        "apiVersion": invoker.api_version,
        "kind": invoker.kind,
        "metadata": {"name": invoker.metadata.name, "namespace": invoker.metadata.namespace},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))
