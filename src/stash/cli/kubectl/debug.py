"""`kubectl stash debug backup|restore|operator`: everything needed to see why, in one report.

What it is for: a plain-text report on stdout, in sections: the invoker (spec and
status), its recent sessions with their status, the Jobs and Pods that ran for it, the
Events about any of these, the agents' logs (the `stash` sidecar or Job containers) and
the operator's logs (its Pods are found by the chart's `app.kubernetes.io/name=stash`
label, in every namespace the caller may list). A part that cannot be read (no RBAC, no
logs from the node) is reported in its place; the report is still written.

Not for: changing anything.
"""

from __future__ import annotations

from typing import Any

import yaml

from stash.cli.kubectl.plugin import Plugin, PluginError
from stash.contract.resources import (
    BACKUPBATCHES,
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    RESTORESESSIONS,
)
from stash.contract.sessions import LABEL_INVOKER_NAME, invoker_selector
from stash.kube.client import JSON, KubeError, NotFound
from stash.kube.resources import EVENTS, JOBS, PODS

__all__ = ["register"]

_OPERATOR_SELECTOR = "app.kubernetes.io/name=stash"


def register(sub: Any) -> None:
    """Add `debug backup|restore|operator` to the plugin's sub-parsers."""
    d = sub.add_parser("debug", help="one report: invoker, sessions, events, agent/operator logs")
    what = d.add_subparsers(dest="what", metavar="WHAT", parser_class=type(d))
    what.required = True
    b = what.add_parser("backup", help="a backup invoker")
    which = b.add_mutually_exclusive_group(required=True)
    which.add_argument("--backupconfig", help="a BackupConfiguration")
    which.add_argument("--backupbatch", help="a BackupBatch")
    r = what.add_parser("restore", help="a RestoreSession")
    r.add_argument("--restoresession", required=True)
    o = what.add_parser("operator", help="the operator's pods and logs")
    for p in (b, r, o):
        p.add_argument("--tail", type=int, default=100, help="log lines per container")
        p.set_defaults(run=debug)


def _section(p: Plugin, title: str) -> None:
    p.say(f"\n===== {title}")


def _dump(p: Plugin, obj: Any) -> None:
    p.say(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip())


def _brief(obj: JSON) -> JSON:
    meta = obj["metadata"]
    return {
        "kind": obj.get("kind"),
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "created": meta.get("creationTimestamp"),
        "spec": obj.get("spec"),
        "status": obj.get("status"),
    }


async def debug(p: Plugin) -> int:
    """Write the report."""
    names: set[str] = set()
    if p.args.what == "backup":
        res = BACKUPBATCHES if p.args.backupbatch else BACKUPCONFIGURATIONS
        name = p.args.backupbatch or p.args.backupconfig
        invoker = await _get(p, res, name)
        names.add(name)
        _section(p, f"{res.kind} {p.namespace}/{name}")
        _dump(p, _brief({**invoker, "kind": res.kind}))
        names |= await _sessions(p, invoker_selector(res.kind, name))
        names |= await _pods_and_jobs(p, f"{LABEL_INVOKER_NAME}={name}")
    elif p.args.what == "restore":
        name = p.args.restoresession
        session = await _get(p, RESTORESESSIONS, name)
        names.add(name)
        _section(p, f"RestoreSession {p.namespace}/{name}")
        _dump(p, _brief({**session, "kind": "RestoreSession"}))
        names |= await _pods_and_jobs(p, f"{LABEL_INVOKER_NAME}={name}")
    if p.args.what != "operator":
        await _events(p, names)
    await _operator(p)
    return 0


async def _get(p: Plugin, res: Any, name: str) -> JSON:
    try:
        obj: JSON = await p.kube.get(res, name, p.namespace)
    except NotFound:
        raise PluginError(f'not found: no {res.kind} "{name}" in namespace {p.namespace}') from None
    return obj


async def _sessions(p: Plugin, selector: str) -> set[str]:
    items, _ = await p.kube.list_all(BACKUPSESSIONS, p.namespace, label_selector=selector)
    items.sort(key=lambda s: s["metadata"].get("creationTimestamp") or "", reverse=True)
    _section(p, f"BackupSessions ({len(items)}, newest first; details of the last 3)")
    for s in items:
        p.say(f"{s['metadata']['name']}  {(s.get('status') or {}).get('phase') or 'Pending'}")
    for s in items[:3]:
        _section(p, f"BackupSession {s['metadata']['name']}")
        _dump(p, _brief({**s, "kind": "BackupSession"}))
    return {s["metadata"]["name"] for s in items}


async def _pods_and_jobs(p: Plugin, selector: str) -> set[str]:
    names: set[str] = set()
    jobs, _ = await p.kube.list_all(JOBS, p.namespace, label_selector=selector)
    _section(p, f"Jobs ({len(jobs)})")
    for job in jobs:
        st = job.get("status") or {}
        p.say(f"{job['metadata']['name']}  active={st.get('active', 0)} "
              f"succeeded={st.get('succeeded', 0)} failed={st.get('failed', 0)}")  # fmt: skip
        names.add(job["metadata"]["name"])
    pods, _ = await p.kube.list_all(PODS, p.namespace)
    mine = [
        pod
        for pod in pods
        if any(o.get("name") in names for o in pod["metadata"].get("ownerReferences") or [])
        or any(c["name"] == "stash" for c in pod["spec"].get("containers") or [])
    ]
    _section(p, f"Pods ({len(mine)}: the Jobs' pods and pods running the stash sidecar)")
    for pod in mine:
        p.say(f"{pod['metadata']['name']}  {(pod.get('status') or {}).get('phase')}")
        names.add(pod["metadata"]["name"])
    for pod in mine:
        await _logs(p, pod, p.args.tail)
    return names


async def _logs(p: Plugin, pod: JSON, tail: int) -> None:
    meta = pod["metadata"]
    for c in [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]:
        _section(p, f"logs {meta['namespace']}/{meta['name']} [{c['name']}]")
        path = PODS.path(meta["namespace"], meta["name"], "log")
        try:
            text = await p.kube.request(
                "GET", path, query={"container": c["name"], "tailLines": tail}, accept="*/*"
            )
        except KubeError as exc:
            p.say(f"(logs unavailable: {exc})")
            continue
        p.say(str(text).rstrip() or "(no output)")


async def _events(p: Plugin, names: set[str]) -> None:
    items, _ = await p.kube.list_all(EVENTS, p.namespace)
    about = [e for e in items if (e.get("involvedObject") or {}).get("name") in names]
    about.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    _section(p, f"Events ({len(about)})")
    for e in about:
        obj = e.get("involvedObject") or {}
        when = e.get("lastTimestamp") or e.get("eventTime") or ""
        p.say(f"{when}  {e.get('type')}  {obj.get('kind')}/{obj.get('name')}  "
              f"{e.get('reason')}: {e.get('message')}")  # fmt: skip


async def _operator(p: Plugin) -> None:
    _section(p, "operator")
    try:
        pods, _ = await p.kube.list_all(PODS, None, label_selector=_OPERATOR_SELECTOR)
    except KubeError as exc:
        p.say(f"(operator pods unavailable: {exc})")
        return
    if not pods:
        p.say(f"(no operator pods with label {_OPERATOR_SELECTOR} are visible to you)")
    for pod in pods:
        meta = pod["metadata"]
        p.say(f"{meta['namespace']}/{meta['name']}  {(pod.get('status') or {}).get('phase')}")
    for pod in pods:
        await _logs(p, pod, p.args.tail)
