"""Auto-backup in the admission: the plan of an annotated workload, read through `Lookup`.

What it is for: `auto_backup_plan()`, which gathers the facts the pure resolution needs
(the blueprints the annotation names, who owns the names the plan may take) and returns
`stash.validation.autobackup.checked_plan` — the call the operator makes from its caches
— so the sidecar the admission injects is the one for the BackupConfiguration the
operator then creates (one admission, one rollout).

Not for: creating anything (the operator does), or the rules (`stash.contract.blueprint`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stash.api import BackupBlueprint, BackupConfiguration
from stash.contract.autobackup import Target, blueprint_names, owner_id, wants_auto_backup
from stash.contract.blueprint import Plan, candidate_names
from stash.inject import pod_volume_names
from stash.validation.autobackup import checked_plan
from stash.webhook.lookup import Lookup

__all__ = ["auto_backup_plan"]


async def auto_backup_plan(
    obj: Mapping[str, Any],
    kind: str,
    lookup: Lookup,
    configurations: Sequence[BackupConfiguration],
) -> Plan | None:
    """The plan of a workload being admitted (None: it names no blueprint).

    `configurations` are the BackupConfigurations of the workload's namespace (already
    read by the caller); other namespaces are read when a blueprint sends objects there.
    """
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if not wants_auto_backup(annotations):
        return None
    target = Target.of(kind, obj, frozenset(pod_volume_names(obj)))
    names = blueprint_names(annotations)
    blueprints: dict[str, BackupBlueprint | None] = {}
    for name in names:
        blueprints[name] = await lookup.blueprint(name)
    by_namespace: dict[str, Sequence[BackupConfiguration]] = {target.namespace: configurations}
    existing: dict[tuple[str, str, str], str] = {}
    for what, ns, name in candidate_names(target, names, blueprints):
        if what == "Repository":
            repo = await lookup.repository(ns, name)
            if repo is not None:
                existing[(what, ns, name)] = owner_id(repo.to_wire())
            continue
        if ns not in by_namespace:
            by_namespace[ns] = await lookup.backup_configurations(ns)
        for bc in by_namespace[ns]:
            if bc.metadata.name == name:
                existing[(what, ns, name)] = owner_id(bc.to_wire())
    return checked_plan(target, blueprints, existing)
