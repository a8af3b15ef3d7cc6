"""`kubectl stash clone pvc SRC --repository R [--to-namespace NS] [--name NEW]`.

What it is for: a copy of a PVC's data in a new PVC, through a backup and a restore, as
upstream's plugin does it (stash-api.md §8): a temporary BackupConfiguration (the
`pvc-backup` Task, SRC mounted at `/stash-data`) backs the claim up into Repository R
(one session, triggered and followed to its end), then a RestoreSession in the target
namespace (the `pvc-restore` Task, a `volumeClaimTemplates` entry with SRC's access
modes, size and storage class) restores that snapshot into the new claim NEW (default
`<SRC>-clone`). Into another namespace, the Repository and its Secret are copied there
first (`objects.copy_of`). Everything temporary (the BackupConfiguration and its
sessions, the RestoreSession, the copies) is deleted at the end, whatever happened (the
new claim is released from the RestoreSession first, so it stays); the snapshot stays in
the repository. `--runtime-settings FILE` (YAML, the invokers'
`runtimeSettings`) is passed to both Jobs.

Not for: cloning a workload's volumes (back up the workload, then `restore`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from pathlib import Path
from typing import Any

import yaml

from stash.cli.kubectl.invokers import follow_session
from stash.cli.kubectl.objects import copy_of
from stash.cli.kubectl.plugin import Plugin, PluginError, add_dry_run
from stash.contract.resources import (
    BACKUPCONFIGURATIONS,
    REPOSITORIES,
    RESTORESESSIONS,
)
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, NotFound, Resource
from stash.kube.resources import PVCS, SECRETS

__all__ = ["register"]

_MOUNT = "/stash-data"


def register(sub: Any) -> None:
    """Add `clone pvc` to the plugin's sub-parsers."""
    c = sub.add_parser("clone", help="copy a PVC's data into a new PVC (backup + restore)")
    c.add_argument("what", choices=["pvc"])
    c.add_argument("source", help="the PVC to clone")
    c.add_argument("--repository", required=True, help="a Repository to go through")
    c.add_argument("--to-namespace", help="the new PVC's namespace (default: the same)")
    c.add_argument("--name", help="the new PVC's name (default: <source>-clone)")
    c.add_argument("--runtime-settings", type=Path, help="YAML runtimeSettings for both Jobs")
    c.add_argument("--timeout", type=float, default=1800, help="seconds for each half")
    add_dry_run(c)
    c.set_defaults(run=clone_pvc)


def _settings(path: Path | None) -> JSON | None:
    if path is None:
        return None
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PluginError(f"--runtime-settings {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise PluginError(f"--runtime-settings {path} is not a YAML mapping")
    return loaded


def backup_of(name: str, source: str, repo: str, settings: JSON | None) -> JSON:
    """The temporary BackupConfiguration that backs the claim up."""
    spec: JSON = {
        "task": {"name": "pvc-backup"},
        "schedule": "*/59 * * * *",
        "repository": {"name": repo},
        "target": {
            "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": source},
            "volumeMounts": [{"name": source, "mountPath": _MOUNT}],
            "paths": [_MOUNT],
        },
        "retentionPolicy": {"name": "keep-all", "keepLast": 1000},
    }
    if settings:
        spec["runtimeSettings"] = settings
    meta = {"name": name, "labels": {"app.kubernetes.io/component": "kubectl-stash-clone"}}
    return {"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
            "metadata": meta, "spec": spec}  # fmt: skip


def restore_of(name: str, claim: JSON, new: str, repo: str, settings: JSON | None) -> JSON:
    """The RestoreSession that fills the new claim, shaped like the source."""
    src = claim["spec"]
    template_spec: JSON = {
        "accessModes": src.get("accessModes") or ["ReadWriteOnce"],
        "resources": {"requests": dict((src.get("resources") or {}).get("requests") or {})},
    }
    if src.get("storageClassName"):
        template_spec["storageClassName"] = src["storageClassName"]
    spec: JSON = {
        "task": {"name": "pvc-restore"},
        "repository": {"name": repo},
        "target": {
            "volumeMounts": [{"name": new, "mountPath": _MOUNT}],
            "volumeClaimTemplates": [{"metadata": {"name": new}, "spec": template_spec}],
            "rules": [{"paths": [_MOUNT]}],
        },
    }
    if settings:
        spec["runtimeSettings"] = settings
    return {"apiVersion": "stash.appscode.com/v1beta1", "kind": "RestoreSession",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


async def clone_pvc(p: Plugin) -> int:
    """Back the claim up, restore it into the new claim, clean up."""
    to = p.args.to_namespace or p.namespace
    new = p.args.name or f"{p.args.source}-clone"
    if to == p.namespace and new == p.args.source:
        raise PluginError(
            "the clone needs another name or namespace: pass --name or --to-namespace"
        )
    settings = _settings(p.args.runtime_settings)
    claim = await _get(p, PVCS, p.args.source, p.namespace)
    repo = await _get(p, REPOSITORIES, p.args.repository, p.namespace)
    if await _exists(p, PVCS, new, to):
        raise PluginError(f"PVC {to}/{new} already exists: pick another --name")
    tag = secrets.token_hex(3)
    bc = backup_of(f"clone-{p.args.source}-{tag}"[:63], p.args.source, p.args.repository, settings)
    rs = restore_of(f"clone-{new}-{tag}"[:63], claim, new, p.args.repository, settings)
    if p.dry_run:
        p.say(f"PVC {p.namespace}/{p.args.source} cloned to {to}/{new} (dry run)")
        return 0
    undo: list[tuple[Resource, str, str]] = []
    try:
        await p.kube.create(BACKUPCONFIGURATIONS, bc, p.namespace)
        undo.append((BACKUPCONFIGURATIONS, bc["metadata"]["name"], p.namespace))
        await _backup(p, bc["metadata"]["name"])
        if to != p.namespace:
            undo += await _copy_repository(p, repo, to)
        await p.kube.create(RESTORESESSIONS, rs, to)
        undo.append((RESTORESESSIONS, rs["metadata"]["name"], to))
        phase = await _follow_restore(p, rs["metadata"]["name"], to)
        await _keep_claim(p, new, to)
        if phase != "Succeeded":
            raise PluginError(
                f"restoring into {to}/{new} ended {phase}: see the Events of RestoreSession "
                f"{rs['metadata']['name']} in {to} (`kubectl get events -n {to}`)"
            )
    finally:
        for res, name, ns in reversed(undo):
            await p.kube.delete(res, name, ns, propagation="Background")
    p.say(f"PVC {p.namespace}/{p.args.source} cloned to {to}/{new}")
    return 0


async def _keep_claim(p: Plugin, name: str, ns: str) -> None:
    """The new claim outlives the RestoreSession that made it (which owns it)."""
    try:
        claim = await p.kube.get(PVCS, name, ns)
    except NotFound:
        return
    owners = claim["metadata"].get("ownerReferences") or []
    kept = [o for o in owners if o.get("kind") != "RestoreSession"]
    if kept != owners:
        await p.kube.patch(PVCS, name, {"metadata": {"ownerReferences": kept or None}}, ns)


async def _get(p: Plugin, res: Resource, name: str, ns: str) -> JSON:
    try:
        obj: JSON = await p.kube.get(res, name, ns)
    except NotFound:
        raise PluginError(f'not found: no {res.kind} "{name}" in namespace {ns}') from None
    return obj


async def _exists(p: Plugin, res: Resource, name: str, ns: str) -> bool:
    try:
        await p.kube.get(res, name, ns)
    except NotFound:
        return False
    return True


async def _backup(p: Plugin, name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        bc = await p.kube.get(BACKUPCONFIGURATIONS, name, p.namespace)
        status = bc.get("status") or {}
        if status.get("phase") == "Ready":
            break
        if time.monotonic() > deadline:
            bad = [c for c in status.get("conditions") or [] if c.get("status") != "True"]
            why = "; ".join(f"{c['type']}: {c.get('message')}" for c in bad) or "no status"
            raise PluginError(f"the temporary BackupConfiguration is not Ready ({why})")
        await asyncio.sleep(1.0)
    session = await create_backup_session(p.kube, {**bc, "kind": "BackupConfiguration"},
                                          dt.datetime.now(dt.UTC))  # fmt: skip
    p.note(f"backing up {p.args.source}: BackupSession {p.namespace}/{session}")
    phase = await follow_session(p, session, p.args.timeout)
    if phase != "Succeeded":
        raise PluginError(
            f"backing up {p.args.source} ended {phase}: see the Events of BackupSession "
            f"{session} (`kubectl get events -n {p.namespace}`)"
        )


async def _copy_repository(p: Plugin, repo: JSON, to: str) -> list[tuple[Resource, str, str]]:
    made: list[tuple[Resource, str, str]] = []
    secret = repo["spec"]["backend"]["storageSecretName"]
    for res, name in ((SECRETS, secret), (REPOSITORIES, repo["metadata"]["name"])):
        if await _exists(p, res, name, to):
            continue  # the user's own; used as it is and left alone
        body = copy_of(await p.kube.get(res, name, p.namespace), to)
        await p.kube.create(res, {**body, "apiVersion": res.api_version, "kind": res.kind}, to)
        made.append((res, name, to))
    return made


async def _follow_restore(p: Plugin, name: str, ns: str) -> str:
    deadline = time.monotonic() + p.args.timeout
    last = ""
    while time.monotonic() < deadline:
        rs = await p.kube.get(RESTORESESSIONS, name, ns)
        phase = str((rs.get("status") or {}).get("phase") or "Pending")
        if phase != last:
            p.note(f"restoring: RestoreSession {ns}/{name} {phase}")
            last = phase
        if phase in ("Succeeded", "Failed", "Unknown", "Invalid"):
            return phase
        await asyncio.sleep(1.0)
    raise PluginError(f"RestoreSession {ns}/{name} is still {last} after {int(p.args.timeout)}s")
