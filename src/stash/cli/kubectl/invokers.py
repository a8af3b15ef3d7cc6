"""`kubectl stash trigger | pause | resume | describe`: the backup invokers' commands.

What it is for: `trigger` creates a BackupSession exactly as a schedule tick does (for a
BackupConfiguration, else a BackupBatch; `<kind>/<name>` says which) and with `--wait`
follows it with a live progress line to its final phase (exit 1 unless Succeeded);
`pause|resume backup --backupconfig=N|--backupbatch=N` set `spec.paused`; `describe`
shows an invoker's conditions, its next three fire times in the schedule's zone (computed
by `stash.cron`, the code the cron engine fires with), its last sessions and its
Repository's stats (stash-api.md §8).

Not for: repository data (`repository`), other objects (`objects`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from stash.cli.kubectl.plugin import (
    Plugin,
    PluginError,
    ProgressLine,
    add_dry_run,
    add_output,
    emit,
    table,
)
from stash.contract.resources import (
    BACKUPBATCHES,
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
)
from stash.contract.sessions import invoker_selector, new_backup_session
from stash.controllers.backupconfiguration import TIMEZONE_ANNOTATION
from stash.controllers.trigger import create_backup_session
from stash.cron import CronError, CronSchedule, parse_schedule
from stash.kube.client import JSON, Kube, NotFound

__all__ = ["backup_invoker_named", "next_fire_times", "register"]

_KINDS = {
    "backupconfiguration": BACKUPCONFIGURATIONS,
    "backupconfigurations": BACKUPCONFIGURATIONS,
    "bc": BACKUPCONFIGURATIONS,
    "backupbatch": BACKUPBATCHES,
    "backupbatches": BACKUPBATCHES,
}
_FINAL = ("Succeeded", "Failed", "Skipped")


def register(sub: Any) -> None:
    """Add trigger, pause, resume and describe to the plugin's sub-parsers."""
    t = sub.add_parser("trigger", help="create a BackupSession now (as a schedule tick does)")
    t.add_argument("name", help="<name>, backupconfiguration/<name> or backupbatch/<name>")
    t.add_argument("--wait", action="store_true", help="follow the session to its end")
    t.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits at most")
    add_dry_run(t)
    t.set_defaults(run=trigger)
    for verb in ("pause", "resume"):
        v = sub.add_parser(verb, help=f"{verb} scheduled backups of an invoker")
        v.add_argument("what", choices=["backup"])
        which = v.add_mutually_exclusive_group(required=True)
        which.add_argument("--backupconfig", help="a BackupConfiguration")
        which.add_argument("--backupbatch", help="a BackupBatch")
        add_dry_run(v)
        v.set_defaults(run=pause_or_resume)
    d = sub.add_parser("describe", help="an invoker: conditions, next runs, sessions, repository")
    d.add_argument("kind", help="backupconfiguration (bc) or backupbatch")
    d.add_argument("name")
    d.add_argument("--default-timezone", default="UTC", help="the operator's default zone")
    d.add_argument("--sessions", type=int, default=5, help="how many recent sessions")
    add_output(d)
    d.set_defaults(run=describe)


async def backup_invoker_named(kube: Kube, text: str, ns: str) -> JSON:
    """`<name>` (a BackupConfiguration, else a BackupBatch) or `<kind>/<name>`."""
    kind, _, name = text.rpartition("/")
    if kind and kind.lower() not in _KINDS:
        raise PluginError(f"{kind} is not backupconfiguration or backupbatch")
    candidates = [_KINDS[kind.lower()]] if kind else [BACKUPCONFIGURATIONS, BACKUPBATCHES]
    for res in candidates:
        try:
            obj = await kube.get(res, name, ns)
        except NotFound:
            continue
        return {**obj, "kind": res.kind}
    what = " or ".join(r.kind for r in candidates)
    raise PluginError(f'not found: no {what} "{name}" in namespace {ns}')


async def trigger(p: Plugin) -> int:
    """Create the BackupSession; with --wait, follow it to its final phase."""
    invoker = await backup_invoker_named(p.kube, p.args.name, p.namespace)
    now = dt.datetime.now(dt.UTC)
    if p.dry_run:
        name = new_backup_session(invoker, now)["metadata"]["name"]
        p.say(f"BackupSession {p.namespace}/{name} created (dry run)")
        return 0
    name = await create_backup_session(p.kube, invoker, now)
    p.say(f"BackupSession {p.namespace}/{name} created")
    if not p.args.wait:
        return 0
    phase = await follow_session(p, name, p.args.timeout)
    p.say(f"BackupSession {p.namespace}/{name} {phase}")
    return 0 if phase == "Succeeded" else 1


def session_progress(session: JSON, elapsed: float | None) -> str:
    """The one-line status of a BackupSession: phase, targets done, hosts done, time."""
    status = session.get("status") or {}
    targets = status.get("targets") or []
    done = sum(1 for t in targets if t.get("phase") in _FINAL)
    hosts = sum(int(t.get("totalHosts") or 0) for t in targets)
    hosts_done = sum(1 for t in targets for h in t.get("stats") or [] if h.get("phase") in _FINAL)
    parts = [f"{session['metadata']['name']}: {status.get('phase') or 'Pending'}"]
    if targets:
        parts.append(f"targets {done}/{len(targets)}")
    if hosts:
        parts.append(f"hosts {hosts_done}/{hosts}")
    if elapsed is not None:
        parts.append(f"{int(elapsed)}s")
    return ", ".join(parts)


async def follow_session(p: Plugin, name: str, timeout: float) -> str:
    """Poll the session until its phase is final; show progress; return the phase."""
    line = ProgressLine(p.err)
    start = time.monotonic()
    while True:
        try:
            session = await p.kube.get(BACKUPSESSIONS, name, p.namespace)
        except NotFound:
            raise PluginError(f"BackupSession {p.namespace}/{name} was deleted") from None
        phase = (session.get("status") or {}).get("phase") or ""
        elapsed = time.monotonic() - start
        line.update(
            session_progress(session, elapsed),
            final=phase in _FINAL,
            state=session_progress(session, None),
        )
        if phase in _FINAL:
            return str(phase)
        if elapsed > timeout:
            raise PluginError(
                f"BackupSession {p.namespace}/{name} is still {phase or 'Pending'} after "
                f"{int(timeout)}s: see `kubectl stash debug backup`, or wait longer (--timeout)"
            )
        await asyncio.sleep(1.0)


async def pause_or_resume(p: Plugin) -> int:
    """Set spec.paused of the named BackupConfiguration or BackupBatch."""
    paused = p.args.command == "pause"
    res = BACKUPBATCHES if p.args.backupbatch else BACKUPCONFIGURATIONS
    target = p.args.backupbatch or p.args.backupconfig
    try:
        current = await p.kube.get(res, target, p.namespace)
    except NotFound:
        raise PluginError(
            f'not found: no {res.kind} "{target}" in namespace {p.namespace}'
        ) from None
    verb = "paused" if paused else "resumed"
    if p.dry_run:
        was = bool((current.get("spec") or {}).get("paused"))
        p.say(f"{res.kind} {p.namespace}/{target} {verb} (dry run; paused now: {was})")
        return 0
    await p.kube.patch(res, target, {"spec": {"paused": paused}}, p.namespace)
    p.say(f"{res.kind} {p.namespace}/{target} {verb}")
    return 0


def invoker_schedule(invoker: JSON, default_tz: str) -> CronSchedule:
    """The invoker's schedule parsed as the operator parses it (zone annotation for a
    BackupConfiguration, `CRON_TZ=`, else the default zone)."""
    text = (invoker.get("spec") or {}).get("schedule") or ""
    tz = None
    if invoker.get("kind") == "BackupConfiguration":
        tz = (invoker["metadata"].get("annotations") or {}).get(TIMEZONE_ANNOTATION)
    return parse_schedule(text, default_tz, tz)


def next_fire_times(schedule: CronSchedule, now: dt.datetime, count: int = 3) -> list[dt.datetime]:
    """The next `count` fire times after `now`, chained as the cron engine chains them."""
    times: list[dt.datetime] = []
    at = now
    for _ in range(count):
        at = schedule.next_after(at)
        times.append(at)
    return times


async def describe(p: Plugin) -> int:
    """Print (or -o json|yaml) the invoker's state, next runs, sessions and repository."""
    kind = p.args.kind.lower()
    if kind not in _KINDS:
        raise PluginError(f"{p.args.kind} is not backupconfiguration (bc) or backupbatch")
    invoker = await backup_invoker_named(p.kube, f"{kind}/{p.args.name}", p.namespace)
    report = await _report(p, invoker)
    if p.output in ("json", "yaml"):
        emit(p, report)
    else:
        p.say(_render(report))
    return 0


async def _report(p: Plugin, invoker: JSON) -> dict[str, Any]:
    spec = invoker.get("spec") or {}
    status = invoker.get("status") or {}
    meta = invoker["metadata"]
    report: dict[str, Any] = {
        "kind": invoker["kind"],
        "name": meta["name"],
        "namespace": meta["namespace"],
        "schedule": spec.get("schedule"),
        "paused": bool(spec.get("paused")),
        "phase": status.get("phase"),
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message")}
            for c in status.get("conditions") or []
        ],
    }
    try:
        schedule = invoker_schedule(invoker, p.args.default_timezone)
    except CronError as exc:
        report["scheduleError"] = str(exc)
    else:
        report["timeZone"] = schedule.tz.key
        if not report["paused"]:
            times = next_fire_times(schedule, dt.datetime.now(dt.UTC))
            report["nextFireTimes"] = [t.astimezone(schedule.tz).isoformat() for t in times]
    selector = invoker_selector(invoker["kind"], meta["name"])
    sessions, _ = await p.kube.list_all(BACKUPSESSIONS, p.namespace, label_selector=selector)
    sessions.sort(key=lambda s: s["metadata"].get("creationTimestamp") or "", reverse=True)
    report["sessions"] = [
        {
            "name": s["metadata"]["name"],
            "phase": (s.get("status") or {}).get("phase"),
            "duration": (s.get("status") or {}).get("sessionDuration"),
            "created": s["metadata"].get("creationTimestamp"),
        }
        for s in sessions[: p.args.sessions]
    ]
    report["repository"] = await _repository(p.kube, spec, meta["namespace"])
    return report


async def _repository(kube: Kube, spec: JSON, ns: str) -> dict[str, Any] | None:
    ref = spec.get("repository") or {}
    if not ref.get("name"):
        return None
    where = ref.get("namespace") or ns
    try:
        repo = await kube.get(REPOSITORIES, ref["name"], where)
    except NotFound:
        return {"name": ref["name"], "namespace": where, "missing": True}
    st = repo.get("status") or {}
    keys = ("integrity", "snapshotCount", "totalSize", "lastBackupTime")
    return {"name": ref["name"], "namespace": where, **{k: st.get(k) for k in keys}}


def _render(r: dict[str, Any]) -> str:
    lines = [
        f"Name:        {r['name']}",
        f"Namespace:   {r['namespace']}",
        f"Kind:        {r['kind']}",
        f"Schedule:    {r['schedule']}" + (f"  ({r['timeZone']})" if r.get("timeZone") else ""),
        f"Paused:      {r['paused']}",
        f"Phase:       {r['phase'] or '<none>'}",
    ]
    if r.get("scheduleError"):
        lines.append(f"Schedule error: {r['scheduleError']}")
    lines.append("Next runs:" + ("   (paused)" if r["paused"] else ""))
    lines += [f"  {t}" for t in r.get("nextFireTimes") or []]
    lines.append("Conditions:")
    rows = [[c["type"], c["status"], c["reason"], c["message"]] for c in r["conditions"]]
    lines += ["  " + ln for ln in table(["type", "status", "reason", "message"], rows).split("\n")]
    lines.append("Sessions:")
    rows = [[s["name"], s["phase"], s["duration"], s["created"]] for s in r["sessions"]]
    lines += ["  " + ln for ln in table(["name", "phase", "duration", "created"], rows).split("\n")]
    repo = r.get("repository")
    if repo:
        lines.append(f"Repository:  {repo['namespace']}/{repo['name']}")
        if repo.get("missing"):
            lines.append("  (not found)")
        else:
            lines.append(
                f"  integrity={repo['integrity']} snapshots={repo['snapshotCount']} "
                f"size={repo['totalSize']} lastBackup={repo['lastBackupTime']}"
            )
    return "\n".join(lines)
