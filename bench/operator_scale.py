"""Operator scale: 2,000 BackupConfigurations created at once, and 500 schedules firing
in the same minute, against the real test control plane.

Prints `name: value baseline ratio` lines:
* converge_seconds: from the first create until all 2,000 are Ready; baseline = the time
  the apiserver took to accept the 2,000 creates (the floor any operator shares).
* operator_cpu_seconds_to_converge: the operator's CPU time (user + system) until then,
  a figure other load on the machine does not inflate the way it does wall time.
* operator_peak_rss_mb: the operator process's peak RSS (VmHWM); baseline = its RSS
  with empty caches, right after start-up.
* tick_to_session_p50/p99_seconds: from the minute tick to each BackupSession's ADDED
  event on a watch; baseline = the watch's own latency for a ConfigMap written at the
  tick by this script.
Targets (issue #19): 10,000 configurations Ready in < 60 s and within 2x the creates,
peak RSS < 300 MB, p99 tick-to-session < 1 s for 500 schedules in one minute.
Run: `.venv/bin/python bench/operator_scale.py [--configs 2000] [--ticking 500]
[--profile FILE]` (`--profile`: the operator under py-spy; prints the frames with the most
samples, a frame counted once per stack it is on).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
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


async def create_configs(kube: Kube, n: int, ticking: int) -> float:
    """Create `n` BackupConfigurations (`ticking` of them every minute); seconds taken."""
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        async with sem:
            await kube.create(
                BACKUPCONFIGURATIONS, _bc(i, "*/1 * * * *" if i < ticking else "0 0 1 1 *"), NS
            )

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.monotonic() - t0


def _phase_of(obj: dict[str, object]) -> object:
    status = obj.get("status")
    phase = status.get("phase") if isinstance(status, dict) else None
    if phase == "Invalid":
        raise SystemExit(f"BackupConfiguration is Invalid: {status}")
    return phase


async def _wait_ready(kube: Kube, n: int, deadline: float) -> None:
    """Until `n` BackupConfigurations are Ready, followed on a watch (a list every
    second would cost the apiserver, on the same cores, a 10,000-object list each time)."""
    last_print = 0.0
    while True:
        items, rv = await kube.list_all(BACKUPCONFIGURATIONS, NS)
        ready = {o["metadata"]["name"] for o in items if _phase_of(o) == "Ready"}
        if len(ready) >= n:
            return
        try:
            async for ev in kube.watch(BACKUPCONFIGURATIONS, NS, resource_version=rv):
                if ev["type"] == "BOOKMARK":
                    continue
                name = ev["object"]["metadata"]["name"]
                if ev["type"] != "DELETED" and _phase_of(ev["object"]) == "Ready":
                    ready.add(name)
                else:
                    ready.discard(name)
                if len(ready) >= n:
                    return
                if time.monotonic() - last_print > 2:
                    last_print = time.monotonic()
                    print(f"  ready {len(ready)}/{n}", file=sys.stderr)
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
        await kube.create(CONFIGMAPS, {"metadata": {"name": "tick"}}, NS)
        async for ev in kube.watch(CONFIGMAPS, NS, resource_version=cmrv, timeout_seconds=30):
            if ev["object"]["metadata"]["name"] == "tick":
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


def _top_frames(profile: str, count: int = 15) -> list[tuple[float, str]]:
    """The frames with the most samples (a frame counts once per stack it is on)."""
    totals: dict[str, int] = {}
    samples = 0
    for line in Path(profile).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        samples += int(n)
        for frame in set(stack.split(";")):
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
            cpu0 = _cpu_seconds(pid)
            t0 = time.monotonic()
            create_s = await create_configs(kube, n, ticking)
            await _wait_ready(kube, n, t0 + 600)
            converge = time.monotonic() - t0
            print(f"converge_seconds: {converge:.1f} {create_s:.1f} {converge / create_s:.2f}")
            print(f"operator_rss_mb_at_converge: {_kb(pid, 'VmHWM') / 1024:.0f}")
            cpu = _cpu_seconds(pid) - cpu0
            print(f"operator_cpu_seconds_to_converge: {cpu:.1f}", flush=True)
            delays, created, base = await _tick_delays(kube, ticking)
            peak = _kb(pid, "VmHWM") / 1024
            print(f"operator_peak_rss_mb: {peak:.0f} {idle_rss:.0f} {peak / idle_rss:.2f}")
            p50, p99 = _pct(delays, 0.5), _pct(delays, 0.99)
            print(f"tick_to_session_p50_seconds: {p50:.3f} {base:.3f} {p50 / base:.1f}")
            print(f"tick_to_session_p99_seconds: {p99:.3f} {base:.3f} {p99 / base:.1f}")
            print(f"tick_to_created_p99_seconds: {_pct(created, 0.99):.0f} (creationTimestamp)")
            print(f"sessions_seen: {len(delays)} {ticking} {len(delays) / ticking:.2f}")
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
