"""`kubectl stash restore | cp`: stash objects made from flags, or copied across namespaces.

What it is for: `restore NAME --repository R --target KIND/NAME ...` creates a
RestoreSession (stash-api.md §1.5) for a workload or a PVC, with the snapshot, paths,
host, volume mounts and task the flags give; `cp repository|secret|backupconfig NAME
--to-namespace NS` copies the object (a Repository with its storage Secret) into another
namespace, keeping its name, labels, annotations and spec and dropping everything the
apiserver or the operator wrote (status, uid, owners, finalizers). Both print the object
instead of creating it with `--dry-run`, and `-o yaml|json` prints what was created.

Not for: invokers' runtime commands (`invokers`).
"""

from __future__ import annotations

from typing import Any

from stash.cli.kubectl.plugin import Plugin, PluginError, add_dry_run, add_output, emit
from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Conflict, NotFound, Resource
from stash.kube.resources import SECRETS

__all__ = ["register", "restore_session"]

#: `--target` kinds and their apiVersion.
_TARGET_API = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "ReplicationController": "v1",
    "PersistentVolumeClaim": "v1",
    "AppBinding": "appcatalog.appscode.com/v1alpha1",
}
_KIND_NAMES = {k.lower(): k for k in _TARGET_API} | {"pvc": "PersistentVolumeClaim"}
_COPYABLE = {
    "repository": REPOSITORIES,
    "secret": SECRETS,
    "backupconfig": BACKUPCONFIGURATIONS,
    "backupconfiguration": BACKUPCONFIGURATIONS,
}


def register(sub: Any) -> None:
    """Add `restore` and `cp` to the plugin's sub-parsers."""
    r = sub.add_parser("restore", help="create a RestoreSession")
    r.add_argument("name", help="the RestoreSession's name")
    r.add_argument("--repository", required=True, help="the Repository to restore from")
    r.add_argument("--target", required=True, help="KIND/NAME, e.g. deployment/web or pvc/data")
    r.add_argument("--snapshot", action="append", default=[], help="a snapshot ID (repeatable)")
    r.add_argument("--paths", default="", help="paths to restore, comma-separated")
    r.add_argument("--host", help="restore the snapshots of this source host")
    r.add_argument(
        "--volume-mount", action="append", default=[], help="VOLUME:MOUNTPATH (repeatable)"
    )
    r.add_argument("--task", help="a Task name (PVCs and databases)")
    add_dry_run(r)
    add_output(r)
    r.set_defaults(run=restore)
    c = sub.add_parser("cp", help="copy a Repository, Secret or BackupConfiguration")
    c.add_argument("what", choices=sorted(_COPYABLE))
    c.add_argument("name")
    c.add_argument("--to-namespace", required=True, help="the namespace to copy into")
    add_dry_run(c)
    add_output(c)
    c.set_defaults(run=copy)


def restore_session(args: Any, namespace: str) -> JSON:
    """The RestoreSession the flags describe."""
    kind_text, _, target_name = str(args.target).partition("/")
    kind = _KIND_NAMES.get(kind_text.lower())
    if kind is None or not target_name:
        known = ", ".join(sorted(_KIND_NAMES))
        raise PluginError(f'--target "{args.target}" is not KIND/NAME with KIND one of {known}')
    rule: JSON = {}
    if args.snapshot:
        rule["snapshots"] = list(args.snapshot)
    if args.paths:
        rule["paths"] = [p for p in args.paths.split(",") if p]
    if args.host:
        rule["sourceHost"] = args.host
    if not rule.get("snapshots") and not rule.get("paths"):
        rule["snapshots"] = ["latest"]
    target: JSON = {
        "ref": {"apiVersion": _TARGET_API[kind], "kind": kind, "name": target_name},
        "rules": [rule],
    }
    mounts = []
    for text in args.volume_mount:
        volume, _, path = str(text).partition(":")
        if not volume or not path.startswith("/"):
            raise PluginError(f'--volume-mount "{text}" is not VOLUME:/mount/path')
        mounts.append({"name": volume, "mountPath": path})
    if mounts:
        target["volumeMounts"] = mounts
    spec: JSON = {"repository": {"name": args.repository}, "target": target}
    if args.task:
        spec["task"] = {"name": args.task}
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": args.name, "namespace": namespace},
        "spec": spec,
    }


async def restore(p: Plugin) -> int:
    """Create the RestoreSession the flags describe."""
    body = restore_session(p.args, p.namespace)
    try:
        await p.kube.get(REPOSITORIES, p.args.repository, p.namespace)
    except NotFound:
        raise PluginError(
            f'not found: no Repository "{p.args.repository}" in namespace {p.namespace}'
        ) from None
    if p.dry_run:
        if p.output in ("json", "yaml"):
            emit(p, body)
        p.say(f"RestoreSession {p.namespace}/{p.args.name} created (dry run)")
        return 0
    try:
        created = await p.kube.create(RESTORESESSIONS, body, p.namespace)
    except Conflict as exc:
        if not exc.already_exists:
            raise
        raise PluginError(
            f"RestoreSession {p.namespace}/{p.args.name} already exists: pick another name"
        ) from None
    if p.output in ("json", "yaml"):
        emit(p, created)
    else:
        p.say(f"RestoreSession {p.namespace}/{p.args.name} created")
    return 0


def copy_of(obj: JSON, namespace: str) -> JSON:
    """`obj` as a new object in `namespace`: what its author wrote, nothing the cluster did."""
    meta = obj["metadata"]
    new_meta: JSON = {"name": meta["name"], "namespace": namespace}
    for key in ("labels", "annotations"):
        kept = {
            k: v
            for k, v in (meta.get(key) or {}).items()
            if k != "kubectl.kubernetes.io/last-applied-configuration"
        }
        if kept:
            new_meta[key] = kept
    copied = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    copied["metadata"] = new_meta
    return copied


async def _copy_one(p: Plugin, res: Resource, name: str, to: str) -> JSON:
    try:
        obj = await p.kube.get(res, name, p.namespace)
    except NotFound:
        raise PluginError(f'not found: no {res.kind} "{name}" in namespace {p.namespace}') from None
    body = {**copy_of(obj, to), "apiVersion": res.api_version, "kind": res.kind}
    if p.dry_run:
        p.note(f"{res.kind} {p.namespace}/{name} copied to {to} (dry run)")
        return body
    try:
        created = await p.kube.create(res, body, to)
    except Conflict as exc:
        if not exc.already_exists:
            raise
        raise PluginError(
            f"{res.kind} {to}/{name} already exists: delete it first or copy elsewhere"
        ) from None
    except NotFound:
        raise PluginError(f"namespace {to} does not exist: create it first") from None
    p.note(f"{res.kind} {p.namespace}/{name} copied to {to}")
    return created


async def copy(p: Plugin) -> int:
    """Copy the object (a Repository together with its storage Secret)."""
    res = _COPYABLE[p.args.what]
    to = p.args.to_namespace
    if to == p.namespace:
        raise PluginError(f"--to-namespace {to} is the namespace it is in: name another one")
    done: list[JSON] = []
    if res is REPOSITORIES:
        repo = await p.kube.get(REPOSITORIES, p.args.name, p.namespace)
        secret = ((repo.get("spec") or {}).get("backend") or {}).get("storageSecretName")
        if secret:
            done.append(await _copy_one(p, SECRETS, secret, to))
    done.append(await _copy_one(p, res, p.args.name, to))
    if p.output in ("json", "yaml"):
        emit(p, {"apiVersion": "v1", "kind": "List", "items": done})
    return 0
