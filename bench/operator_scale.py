"""Operator scale: 2,000 BackupConfigurations created at once, and 500 schedules firing
in the same minute, against the real test control plane.

Two phases, so that one figure does not measure the other's work:
1. converge: all configurations are created at once, the 500 ticking ones paused
   (`spec.paused`), so no BackupSession runs while the operator converges;
2. ticks: once all are Ready, the 500 are unpaused (and the operator has registered
   them and written the phase Events it writes in the background), and the next two
   whole minutes are measured: the first tick makes each
   invoker's first session, the second is the steady state.

Prints `name: value baseline ratio` lines:
* converge_seconds: from the first create until all 2,000 are Ready; baseline = the time
  the apiserver took to accept the 2,000 creates (the floor any operator shares).
* operator_cpu_seconds_to_converge: the operator's CPU time (user + system) until then,
  a figure other load on the machine does not inflate the way it does wall time.
* apiserver_requests_per_config: the apiserver's own count of requests (its
  `apiserver_request_total`, every client: the bench's creates and list included) during
  the converge phase, per configuration, by verb and resource; for each tick, the same
  from when the bench starts to wait for the tick (up to a minute before it) until the
  tick's last session was seen, per session (the whole control plane's: its job
  controller, scheduler and kubelet too).
* operator_peak_rss_mb: the operator process's peak RSS (VmHWM); baseline = its RSS
  with empty caches, right after start-up.
* tick_to_session_p50/p99_seconds: from the minute tick to each BackupSession's ADDED
  event on a watch; baseline = the watch's own latency for a ConfigMap written at the
  tick by this script. tick_burst_floor_seconds: how long the apiserver takes to accept
  that many creates at all (the rate of the converge phase's creates), the floor of the
  p99 for a burst of sessions due at the same second.
Targets (issue #19): 10,000 configurations Ready in < 60 s and within 2x the creates,
peak RSS < 300 MB, p99 tick-to-session < 1 s for 500 schedules in one minute.
Run: `.venv/bin/python bench/operator_scale.py [--configs 2000] [--ticking 500]
[--profile FILE]` (`--ticking 0`: the converge phase alone; `--profile`: the operator
under py-spy; prints the frames with the most samples, a frame counted once per stack it
is on, the event loop's left out).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stash.contract.resources import (  # noqa: E402
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
)
from stash.kube.client import Gone, Kube  # noqa: E402
from stash.kube.resources import CONFIGMAPS, CRDS, NAMESPACES, PVCS, SECRETS  # noqa: E402
from stash_dev import ControlPlane  # noqa: E402
from stash_dev.leaks import LeakWatch  # noqa: E402

NS = "bench"


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (steadier than wall time on a busy host)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bc(i: int, schedule: str) -> dict[str, object]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": f"bc-{i:05d}"},
        "spec": {
            "schedule": schedule,
            "repository": {"name": "repo"},
            # PVC targets (job model): each BackupConfiguration is independent, as in a
            # cluster where each protects its own volume; no workload is re-templated.
            "task": {"name": "pvc-backup"},
            "target": {
                "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
                "paths": ["/data"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            "retentionPolicy": {"name": "keep", "keepLast": 5, "prune": True},
        },
    }


async def install_world(kube: Kube) -> None:
    """CRDs, the bench namespace, a Secret, a Repository and the PVC every config targets."""
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        await kube.create(CRDS, yaml.safe_load(path.read_text()))
    await asyncio.sleep(3)  # CRDs become Established
    await kube.create(NAMESPACES, {"metadata": {"name": NS}})
    await kube.create(
        SECRETS, {"metadata": {"name": "s"}, "stringData": {"RESTIC_PASSWORD": "x"}}, NS
    )
    repo = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo"},
        "spec": {
            "backend": {"storageSecretName": "s", "local": {"mountPath": "/b", "emptyDir": {}}}
        },
    }
    await kube.create(REPOSITORIES, repo, NS)
    pvc = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await kube.create(PVCS, pvc, NS)


async def create_configs(kube: Kube, n: int, ticking: int, *, paused: bool = False) -> float:
    """Create `n` BackupConfigurations (`ticking` of them every minute, created paused
    with `paused`); seconds taken."""
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        bc = _bc(i, "*/1 * * * *" if i < ticking else "0 0 1 1 *")
        if paused and i < ticking:
            bc["spec"]["paused"] = True  # type: ignore[index]
        async with sem:
            await kube.create(BACKUPCONFIGURATIONS, bc, NS)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.monotonic() - t0


async def unpause(kube: Kube, ticking: int) -> float:
    """Unpause the first `ticking` configurations; seconds taken."""
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            await kube.patch(BACKUPCONFIGURATIONS, f"bc-{i:05d}", {"spec": {"paused": False}}, NS)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(ticking)))
    return time.monotonic() - t0


_REQUEST_LINE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


async def apiserver_requests(kube: Kube) -> dict[str, float]:
    """The apiserver's request counts so far, by `VERB resource[/subresource]`."""
    text = await kube.request("GET", "/metrics", accept="text/plain")
    counts: dict[str, float] = {}
    for line in str(text).splitlines():
        m = _REQUEST_LINE.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(1)))
        what = labels.get("resource", "") + (
            "/" + labels["subresource"] if labels.get("subresource") else ""
        )
        key = f"{labels.get('verb', '?')} {what}"
        counts[key] = counts.get(key, 0.0) + float(m.group(2))
    return counts


def _per_config(before: dict[str, float], after: dict[str, float], n: int) -> str:
    """The requests made between two counts, per configuration, the largest first."""
    diff = {k: v - before.get(k, 0.0) for k, v in after.items()}
    ranked = sorted(((v, k) for k, v in diff.items() if v / n >= 0.01), reverse=True)
    total = sum(v for v, _ in ranked)
    return f"{total / n:.2f} (" + ", ".join(f"{k} {v / n:.2f}" for v, k in ranked) + ")"


async def _events_settled(kube: Kube, limit: float = 240.0) -> None:
    """Until the apiserver has seen no Event POST for two seconds (the operator writes
    the configurations' phase Events in the background, after their status)."""
    last, quiet, deadline = -1.0, 0, time.monotonic() + limit
    while quiet < 2 and time.monotonic() < deadline:
        posts = (await apiserver_requests(kube)).get("POST events", 0.0)
        quiet = quiet + 1 if posts == last else 0
        last = posts
        await asyncio.sleep(1)


def _phase_of(obj: dict[str, object]) -> object:
    status = obj.get("status")
    phase = status.get("phase") if isinstance(status, dict) else None
    if phase == "Invalid":
        raise SystemExit(f"BackupConfiguration is Invalid: {status}")
    return phase


def _ready(obj: dict[str, object]) -> bool:
    return _phase_of(obj) == "Ready"


def _unpaused(obj: dict[str, object]) -> bool:
    """Ready, and its schedule registered as unpaused (the engine fires it)."""
    status = obj.get("status")
    conds = status.get("conditions") if isinstance(status, dict) else None
    return _ready(obj) and any(
        c.get("type") == "ScheduleRegistered" and "paused" not in str(c.get("message"))
        for c in conds or []
    )


async def _wait_for(
    kube: Kube, n: int, deadline: float, done: Callable[[dict[str, object]], bool] = _ready
) -> None:
    """Until `n` BackupConfigurations are `done`, followed on a watch (a list every
    second would cost the apiserver, on the same cores, a 10,000-object list each time)."""
    last_print = 0.0
    while True:
        items, rv = await kube.list_all(BACKUPCONFIGURATIONS, NS)
        ready = {o["metadata"]["name"] for o in items if done(o)}
        if len(ready) >= n:
            return
        try:
            async for ev in kube.watch(BACKUPCONFIGURATIONS, NS, resource_version=rv):
                if ev["type"] == "BOOKMARK":
                    continue
                name = ev["object"]["metadata"]["name"]
                if ev["type"] != "DELETED" and done(ev["object"]):
                    ready.add(name)
                else:
                    ready.discard(name)
                if len(ready) >= n:
                    return
                if time.monotonic() - last_print > 2:
                    last_print = time.monotonic()
                    print(f"  {len(ready)}/{n}", file=sys.stderr)
                if time.monotonic() > deadline:
                    raise SystemExit("not converged within 600 s")
        except Gone:
            pass  # again from a fresh list


async def _tick_delays(kube: Kube, ticking: int) -> tuple[list[float], list[float], float]:
    """Per session of the measured tick: when its ADDED event arrived, and its
    creationTimestamp (the apiserver's clock, whole seconds), both from the tick; and
    the watch's own latency (baseline)."""
    now = dt.datetime.now(dt.UTC)
    tick = (now + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (tick - now).total_seconds() < 10:
        tick += dt.timedelta(minutes=1)
    _, rv = await kube.list_all(BACKUPSESSIONS, NS)
    suffix = f"-{int(tick.timestamp())}"
    seen: dict[str, float] = {}
    created: dict[str, float] = {}
    """Per session: its creationTimestamp (the apiserver's clock, whole seconds) - tick."""
    tick_mono = time.monotonic() + (tick - dt.datetime.now(dt.UTC)).total_seconds()

    async def watch_sessions() -> None:
        # The apiserver may drop a watcher that falls behind a burst; resume from the
        # last resourceVersion seen (late events only make the measured delay longer).
        # Metadata only: the earlier ticks' sessions change all the time, and decoding
        # whole objects on this (starved) process would delay what it measures.
        last = rv
        while len(seen) < ticking:
            try:
                async for ev in kube.watch(
                    BACKUPSESSIONS,
                    NS,
                    resource_version=last,
                    timeout_seconds=180,
                    metadata_only=True,
                ):
                    meta = ev["object"]["metadata"]
                    last = meta.get("resourceVersion", last)
                    # Only this tick's sessions (an earlier tick may fire while we wait).
                    if ev["type"] == "ADDED" and meta["name"].endswith(suffix):
                        _saw(meta)
                        if len(seen) >= ticking:
                            return
            except Gone:  # 410 under a burst: what was missed, from a list
                items, last = await kube.list_all(BACKUPSESSIONS, NS, metadata_only=True)
                for obj in items:
                    if obj["metadata"]["name"].endswith(suffix):
                        _saw(obj["metadata"])

    def _saw(meta: dict[str, str]) -> None:
        seen.setdefault(meta["name"], time.monotonic())
        stamp = dt.datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
        created.setdefault(meta["name"], (stamp - tick).total_seconds())

    async def baseline() -> float:
        _, cmrv = await kube.list_all(CONFIGMAPS, NS)
        await asyncio.sleep(max(0.0, tick_mono - time.monotonic()))
        t = time.monotonic()
        await kube.create(CONFIGMAPS, {"metadata": {"name": f"tick{suffix}"}}, NS)
        async for ev in kube.watch(CONFIGMAPS, NS, resource_version=cmrv, timeout_seconds=30):
            if ev["object"]["metadata"]["name"] == f"tick{suffix}":
                return time.monotonic() - t
        return float("nan")

    base_task = asyncio.create_task(baseline())
    await asyncio.wait_for(watch_sessions(), timeout=240)
    delays = sorted(v - tick_mono for v in seen.values())
    return delays, sorted(created.values()), await base_task


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def operator_command(kubeconfig: str, profile: str | None) -> list[str]:
    """The operator's command line; under `py-spy record` (its own samples, written to
    `profile` as py-spy's raw folded stacks) when asked."""
    command = [
        sys.executable,
        "-m",
        "stash.cli.main",
        "operator",
        f"--kubeconfig={kubeconfig}",
        f"--namespace={NS}",
        f"--operator-namespace={NS}",
        "--log-level=WARNING",
    ]
    if not profile:
        return command
    spy = Path(sys.executable).with_name("py-spy")
    return [str(spy), "record", "--format", "raw", "--rate", "50", "-o", profile, "--", *command]


def _python_pid(spy_pid: int) -> int:
    """The operator's pid under `py-spy record` (py-spy's child), waiting for it."""
    children = Path(f"/proc/{spy_pid}/task/{spy_pid}/children")
    for _ in range(100):
        found = children.read_text().split()
        if found:
            return int(found[0])
        time.sleep(0.1)
    raise SystemExit("py-spy started no operator")


#: Frames on (nearly) every stack, which say nothing about where the time goes.
_PLUMBING = ("asyncio/", "<frozen runpy>", "stash/cli/", "selectors.py", "stash/kube/supervisor")


def _top_frames(profile: str, count: int = 20) -> list[tuple[float, str]]:
    """The frames with the most samples (a frame counts once per stack it is on), the
    event loop's and the command line's left out."""
    totals: dict[str, int] = {}
    samples = 0
    for line in Path(profile).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        samples += int(n)
        for frame in set(stack.split(";")):
            if any(p in frame for p in _PLUMBING):
                continue
            totals[frame] = totals.get(frame, 0) + int(n)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:count]
    return [(100.0 * v / max(samples, 1), frame) for frame, v in ranked]


async def main(n: int, ticking: int, leaks: LeakWatch, profile: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cp = ControlPlane(Path(tmp) / "cluster")
        await asyncio.to_thread(cp.start)
        op: subprocess.Popen[bytes] | None = None
        kube = await Kube.connect(cp.kubeconfig)
        try:
            await install_world(kube)
            env = dict(
                os.environ,
                STASH_METRICS_PORT="0",
                STASH_LEADER_ELECT="false",
                STASH_SERVE_WEBHOOK="false",
                STASH_SERVE_SNAPSHOT_API="false",
                STASH_LOG_FORMAT=os.environ.get("STASH_LOG_FORMAT", "text"),  # stderr is a pipe
            )
            op = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                operator_command(cp.kubeconfig, profile), env=env, stderr=subprocess.PIPE
            )
            leaks.follow("operator", op.stderr)
            await asyncio.sleep(5)
            pid = _python_pid(op.pid) if profile else op.pid
            idle_rss = _kb(pid, "VmRSS") / 1024
            requests0 = await apiserver_requests(kube)
            cpu0 = _cpu_seconds(pid)
            t0 = time.monotonic()
            create_s = await create_configs(kube, n, ticking, paused=True)
            await _wait_for(kube, n, t0 + 600)
            converge = time.monotonic() - t0
            cpu = _cpu_seconds(pid) - cpu0
            requests = _per_config(requests0, await apiserver_requests(kube), n)
            print(f"converge_seconds: {converge:.1f} {create_s:.1f} {converge / create_s:.2f}")
            print(f"operator_rss_mb_at_converge: {_kb(pid, 'VmHWM') / 1024:.0f}")
            print(f"operator_cpu_seconds_to_converge: {cpu:.1f}")
            print(f"apiserver_requests_per_config: {requests}", flush=True)
            if not ticking:  # --ticking 0: the converge phase alone
                return
            floor = ticking * create_s / n
            print(
                f"tick_burst_floor_seconds: {floor:.2f} (the apiserver's time for {ticking} "
                "creates at the rate it accepted the configurations above)"
            )
            unpause_s = await unpause(kube, ticking)
            await _wait_for(kube, ticking, time.monotonic() + 600, _unpaused)
            print(f"unpaused: {ticking} in {unpause_s:.1f} s (then waited for the operator)")
            await _events_settled(kube)
            settled = time.monotonic() - t0 - converge
            print(f"events_written_seconds_after_converge: {settled:.1f} (in the background)")
            # The first tick creates each invoker's first session (its first Job, and
            # what that needs); the second is the steady state of a cluster that backs
            # up every minute, the first tick's sessions still running.
            for which in ("first", "second"):
                before = await apiserver_requests(kube)
                delays, created, base = await _tick_delays(kube, ticking)
                during = _per_config(before, await apiserver_requests(kube), ticking)
                p50, p99 = _pct(delays, 0.5), _pct(delays, 0.99)
                print(f"{which} tick after unpausing:")
                print(f"tick_to_session_p50_seconds: {p50:.3f} {base:.3f} {p50 / base:.1f}")
                print(f"tick_to_session_p99_seconds: {p99:.3f} {base:.3f} {p99 / base:.1f}")
                created_p99 = _pct(created, 0.99)
                print(f"tick_to_created_p99_seconds: {created_p99:.0f} (creationTimestamp)")
                print(f"sessions_seen: {len(delays)} {ticking} {len(delays) / ticking:.2f}")
                print(f"apiserver_requests_per_session_until_seen: {during}")
            peak = _kb(pid, "VmHWM") / 1024
            print(f"operator_peak_rss_mb: {peak:.0f} {idle_rss:.0f} {peak / idle_rss:.2f}")
        finally:
            if op is not None:
                # Under py-spy, stop the operator: py-spy then writes the profile and exits.
                os.kill(_python_pid(op.pid) if profile else op.pid, 15)
                op.wait(timeout=60)
            await kube.close()
            cp.stop()
            leaks.scan_logs("bench", Path(tmp))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", type=int, default=2000)
    parser.add_argument("--ticking", type=int, default=500)
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record the operator with py-spy into FILE and print the frames with the most samples",
    )
    a = parser.parse_args()
    with LeakWatch() as watch:
        asyncio.run(main(a.configs, a.ticking, watch, a.profile))
    if a.profile:
        for share, frame in _top_frames(a.profile):
            print(f"profile: {share:5.1f}% {frame}")
    sys.exit(watch.verdict())
