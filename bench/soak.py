"""Soak (issue #19 item 5): the operator and the backup sidecar over `--minutes` (default
60) of a one-minute schedule; their memory must stay flat and every session succeed.

One real test control plane, `stash operator` as its own process (as in a cluster), in
namespace `bench`: a Deployment `web` whose BackupConfiguration (sidecar model) and a
PVC `data` whose BackupConfiguration (job model, task pvc-backup) both run on
`* * * * *`, each into its own local Repository with retention keepLast 5 + prune. The
injected `stash` sidecar runs for the whole soak with the pod runner; each Job's pod is
run by the pod runner when it is scheduled. A few KiB of the data change every minute,
so each session backs up something new. Every `--interval` seconds (15) the RSS of the
operator and of the sidecar's `stash` process (restic, its child, excluded) are sampled
and the BackupSessions' phases are recorded (a watch would do too; a list every 15 s is
cheap with a history of a few sessions).

The figure and its baseline: memory is "flat" when, after warming up, it does not grow
with time. Warm-up is the first sixth of the run (10 minutes of 60: caches filled, every
code path of a session taken several times, the allocator's arenas sized). The growth
rate is the least-squares slope of RSS over the second half of the run, in MB per hour;
its baseline is the process's own RSS at the end of warm-up, so the ratio is the share
of its warm size the process would grow per hour (a slope alone means little without
the size; a ratio of two slopes is unstable, both being near zero when all is well).
Target: ratio <= 0.05 for each process (5 % per hour: for the ~110 MB operator, 5.5 MB/h,
a leak of ~45 KiB per session at two sessions a minute; a smaller leak shows as a higher
ratio than the previous run's, not as a failure within an hour). The slope is judged only
on runs of 20 minutes or more; shorter runs (`--minutes 3`, a quick check) print it
unjudged. The run also fails when a session fails, when fewer sessions succeed than the
schedule should have made (minutes - 2 per invoker), or when a process leaves a leak
report ("Unclosed client session", ...: `stash_dev.leaks`) on its way out.

Prints `name: value baseline ratio` lines: sessions_succeeded (against the number
expected), sessions_failed, per process rss_first/last/peak_mb and
rss_slope_mb_per_hour (baseline: RSS at warm-up end, MB), and leak_reports.
Run: `.venv/bin/python bench/soak.py [--minutes 60] [--interval 15]`. With PYTHONPATH set
(e.g. to a copy's `src`, so edits to the checkout do not reach a running soak), the
agents get it too, and so run the operator's code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stash.api.crdgen import crds  # noqa: E402
from stash.contract.resources import (  # noqa: E402
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
)
from stash.kube.client import JSON, Kube  # noqa: E402
from stash.kube.resources import (  # noqa: E402
    CRDS,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    PVCS,
    PVS,
    SECRETS,
)
from stash_dev import ControlPlane  # noqa: E402
from stash_dev.demo_world import agent_env, make_data  # noqa: E402
from stash_dev.leaks import LeakWatch  # noqa: E402
from stash_dev.local import tools_bin  # noqa: E402
from stash_dev.podrunner import PodRunner, RunningContainer  # noqa: E402

NS = "bench"
PASSWORD = "soak-password"
SCHEDULE = "* * * * *"
#: Largest growth per hour, as a share of the process's RSS after warm-up.
SLOPE_LIMIT = 0.05
#: Runs shorter than this print the slope without judging it.
JUDGED_MINUTES = 20


@dataclass
class Series:
    """One process's RSS samples: (seconds since start, MB)."""

    name: str
    samples: list[tuple[float, float]] = field(default_factory=list)

    def figures(self, warm_s: float, half_s: float) -> tuple[float, float, float, float, float]:
        """first, last, peak, RSS at warm-up end, least-squares slope (MB/h) from half_s."""
        mb = [v for _, v in self.samples]
        warm = next((v for t, v in self.samples if t >= warm_s), mb[-1])
        tail = [(t, v) for t, v in self.samples if t >= half_s]
        return mb[0], mb[-1], max(mb), warm, _slope(tail) * 3600


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of v over t (0 for fewer than two points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / den if den else 0.0


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _repository(name: str, path: Path) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name},
        "spec": {
            "backend": {
                "storageSecretName": "s",
                "local": {"hostPath": {"path": str(path)}, "mountPath": "/repo"},
            }
        },
    }


def _invoker(name: str, repo: str, target: JSON, env: list[JSON], **extra: object) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": name},
        "spec": {
            "schedule": SCHEDULE,
            "repository": {"name": repo},
            "target": target,
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            **extra,
            "runtimeSettings": {
                "container": {"env": env},
                "pod": {"securityContext": {"runAsUser": 0}},
            },
        },
    }


async def install_world(kube: Kube, work: Path, env: list[JSON]) -> None:
    """CRDs, namespace, Secret, two Repositories, Deployment web, PVC data, two invokers."""
    for crd in crds():
        await kube.create(CRDS, crd)
    await asyncio.sleep(3)  # CRDs become Established
    await kube.create(NAMESPACES, {"metadata": {"name": NS}})
    secret = {"metadata": {"name": "s"}, "stringData": {"RESTIC_PASSWORD": PASSWORD}}
    await kube.create(SECRETS, secret, NS)
    await kube.create(REPOSITORIES, _repository("web-repo", work / "web-repo"), NS)
    await kube.create(REPOSITORIES, _repository("pvc-repo", work / "pvc-repo"), NS)
    labels = {"app": "web"}
    pod_spec = {
        "containers": [{"name": "web", "image": "x"}],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    await kube.create(DEPLOYMENTS, deployment, NS)
    pvc = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await kube.create(PVCS, pvc, NS)
    web = {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "paths": ["/data"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    await kube.create(BACKUPCONFIGURATIONS, _invoker("web-backup", "web-repo", web, env), NS)
    claim = {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
        "paths": ["/source/data"],
        "volumeMounts": [{"name": "data", "mountPath": "/source/data"}],
    }
    pvc_bc = _invoker("pvc-backup", "pvc-repo", claim, env, task={"name": "pvc-backup"})
    await kube.create(BACKUPCONFIGURATIONS, pvc_bc, NS)


async def until(probe, what: str, timeout: float):  # type: ignore[no-untyped-def]
    """`probe()`'s first truthy result, polled every 0.2 s; exit naming `what` if none."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


async def sidecar_pod(kube: Kube) -> JSON | None:
    """web's scheduled pod once the operator injected the `stash` sidecar."""
    for p in (await kube.list(PODS, NS, label_selector="app=web"))["items"]:
        names = [c["name"] for c in p["spec"]["containers"]]
        alive = not p["metadata"].get("deletionTimestamp")
        if "stash" in names and p["spec"].get("nodeName") and alive:
            return p
    return None


async def all_ready(kube: Kube) -> bool:
    """Both BackupConfigurations are Ready."""
    items = (await kube.list(BACKUPCONFIGURATIONS, NS))["items"]
    phases = [(o.get("status") or {}).get("phase") for o in items]
    return len(phases) == 2 and all(p == "Ready" for p in phases)


async def claim_dir(kube: Kube) -> Path | None:
    """The host directory of PVC data's volume, once bound."""
    pvc = await kube.get(PVCS, "data", NS)
    if (pvc.get("status") or {}).get("phase") != "Bound":
        return None
    pv = await kube.get(PVS, pvc["spec"]["volumeName"])
    return Path(pv["spec"]["hostPath"]["path"])


class JobPods:
    """Runs each Job pod of the namespace once it is scheduled (no container runtime
    here), then releases its volumes; counts the pods that could not run."""

    def __init__(self, kube: Kube, runner: PodRunner) -> None:
        self.kube = kube
        self.runner = runner
        self.seen: set[str] = set()
        self.errors: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def loop(self) -> None:
        """Every 2 s, start what is new."""
        while True:
            pods = (await self.kube.list(PODS, NS, label_selector="job-name"))["items"]
            for pod in pods:
                uid = pod["metadata"]["uid"]
                if uid in self.seen or not pod["spec"].get("nodeName"):
                    continue
                if pod["metadata"].get("deletionTimestamp"):
                    continue
                self.seen.add(uid)
                task = asyncio.create_task(self._run(pod))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(2)

    async def _run(self, pod: JSON) -> None:
        try:
            for container in await self.runner.run_pod(pod, report_status=True):
                await container.wait(timeout=300)
        except Exception as exc:  # reported at the end; the soak goes on
            self.errors.append(f"{pod['metadata']['name']}: {exc}")
        finally:
            await self.runner.release(pod)


async def change_data(dirs: list[Path]) -> None:
    """Every minute, a new 16 KiB file in each data directory (the oldest of 5 goes)."""
    rng = random.Random(1)
    n = 0
    while True:
        for d in dirs:
            (d / f"tick{n % 5}.bin").write_bytes(rng.randbytes(16384))
        n += 1
        await asyncio.sleep(60)


async def sessions_now(kube: Kube, phases: dict[str, str]) -> None:
    """Record each BackupSession's phase (a session's last seen phase stands)."""
    for s in (await kube.list(BACKUPSESSIONS, NS))["items"]:
        phase = (s.get("status") or {}).get("phase") or "New"
        phases[s["metadata"]["name"]] = phase


def operator_command(kubeconfig: Path) -> list[str]:
    """`stash operator` for namespace bench, warnings and errors only."""
    return [
        sys.executable,
        *("-m", "stash.cli.main", "operator", f"--kubeconfig={kubeconfig}"),
        *(f"--namespace={NS}", f"--operator-namespace={NS}", "--log-level=WARNING"),
    ]


FINAL = ("Succeeded", "Failed", "Skipped")


async def sample(
    kube: Kube,
    series: list[tuple[Series, int]],
    phases: dict[str, str],
    minutes: float,
    every: float,
) -> None:
    """Sample RSS and sessions every `every` seconds for `minutes`."""
    t0 = time.monotonic()
    end = t0 + minutes * 60
    last_print = t0
    while True:
        now = time.monotonic()
        for s, pid in series:
            mb = _rss_mb(pid)
            if mb is None:
                raise SystemExit(f"{s.name} (pid {pid}) is gone")
            s.samples.append((now - t0, mb))
        await sessions_now(kube, phases)
        if now - last_print >= 300 or now >= end:
            last_print = now
            done = sum(p == "Succeeded" for p in phases.values())
            rss = " ".join(f"{s.name} {s.samples[-1][1]:.1f} MB" for s, _ in series)
            print(
                f"  {(now - t0) / 60:5.1f} min: {done} sessions succeeded; {rss}", file=sys.stderr
            )
        if now >= end:
            return
        await asyncio.sleep(min(every, end - now))


def report(series: list[Series], phases: dict[str, str], minutes: float) -> list[str]:
    """Print the figures; the reasons the soak failed (none: it passed)."""
    failures: list[str] = []
    ok = sum(p == "Succeeded" for p in phases.values())
    failed = sorted(n for n, p in phases.items() if p == "Failed")
    expected = 2 * max(1, int(minutes) - 2)
    print(f"sessions_succeeded: {ok} {expected} {ok / expected:.2f}")
    print(f"sessions_failed: {len(failed)}")
    if failed:
        failures.append(f"sessions failed: {', '.join(failed)}")
    if ok < expected:
        failures.append(f"{ok} sessions succeeded, the schedule should have made {expected}")
    warm_s, half_s = minutes * 60 / 6, minutes * 60 / 2
    judged = minutes >= JUDGED_MINUTES
    for s in series:
        first, last, peak, warm, slope = s.figures(warm_s, half_s)
        print(f"{s.name}_rss_first_last_peak_mb: {first:.1f} {last:.1f} {peak:.1f}")
        verdict = "" if judged else f" (not judged: shorter than {JUDGED_MINUTES} min)"
        ratio = slope / warm
        print(f"{s.name}_rss_slope_mb_per_hour: {slope:.2f} {warm:.1f} {ratio:.3f}{verdict}")
        if judged and ratio > SLOPE_LIMIT:
            failures.append(
                f"{s.name} grows {slope:.2f} MB/h, {ratio:.1%} of its warm {warm:.1f} MB "
                f"(limit {SLOPE_LIMIT:.0%})"
            )
    return failures


async def settle(kube: Kube, phases: dict[str, str]) -> None:
    """Wait (up to 3 min) until no session is still running, so none is cut off."""
    end = time.monotonic() + 180
    while time.monotonic() < end:
        await sessions_now(kube, phases)
        if all(p in FINAL for p in phases.values()):
            return
        await asyncio.sleep(2)


async def stop_operator(op: subprocess.Popen[bytes]) -> None:
    """SIGTERM (its `finally` blocks run and report leaks), SIGKILL after 40 s."""
    if op.poll() is None:
        op.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(op.wait, 40)
        except subprocess.TimeoutExpired:
            op.kill()
            await asyncio.to_thread(op.wait)


async def main(minutes: float, every: float, leaks: LeakWatch) -> list[str]:
    """The soak; the reasons it failed."""
    restic_dir = await asyncio.to_thread(tools_bin)
    env = agent_env(restic_dir)
    if os.environ.get("PYTHONPATH"):  # the agents run the operator's code (a copy's)
        env.append({"name": "PYTHONPATH", "value": os.environ["PYTHONPATH"]})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        make_data(data)
        cp = ControlPlane(work / "cluster")
        await asyncio.to_thread(cp.start)
        kube = await Kube.connect(cp.kubeconfig)
        runner = PodRunner(kube, work / "pods")
        op: subprocess.Popen[bytes] | None = None
        sidecar: RunningContainer | None = None
        background: list[asyncio.Task[None]] = []
        op_log = work / "operator.log"
        try:
            await install_world(kube, work, env)
            op_env = dict(
                os.environ,
                STASH_METRICS_PORT="0",
                STASH_LEADER_ELECT="false",
                STASH_SERVE_WEBHOOK="false",
                STASH_SERVE_SNAPSHOT_API="false",
            )
            with op_log.open("wb") as log:
                op = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
                    operator_command(cp.kubeconfig), env=op_env, stderr=log, stdout=log
                )
            pod = await until(lambda: sidecar_pod(kube), "web's sidecar", 120)
            await until(lambda: all_ready(kube), "both BackupConfigurations Ready", 120)
            volume = await until(lambda: claim_dir(kube), "PVC data bound", 60)
            await asyncio.to_thread(make_data, volume)
            sidecar = await runner.run(pod, "stash", volumes={"data": data})
            jobs = JobPods(kube, runner)
            background = [
                asyncio.create_task(jobs.loop()),
                asyncio.create_task(change_data([data, volume])),
            ]
            await asyncio.sleep(10)  # the sidecar has imported what it runs and is watching
            series = [(Series("operator"), op.pid), (Series("sidecar"), sidecar.pid)]
            phases: dict[str, str] = {}
            print(f"  soaking for {minutes:g} min (load {os.getloadavg()[0]:.2f})", file=sys.stderr)
            await sample(kube, series, phases, minutes, every)
            await settle(kube, phases)
            print(f"  load average at the end: {os.getloadavg()}", file=sys.stderr)
            failures = report([s for s, _ in series], phases, minutes)
            failures += [f"a Job pod did not run: {e}" for e in jobs.errors]
            return failures
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if sidecar is not None:
                await sidecar.stop(grace=30)
                leaks.scan_file("sidecar", sidecar.log_path)
            if op is not None:
                await stop_operator(op)
                leaks.scan_file("operator", op_log)
            for log_path in (work / "pods").glob("*/*.log"):
                leaks.scan_file(f"container {log_path.parent.name}", log_path)
            await runner.close()
            await kube.close()
            await asyncio.to_thread(cp.stop)
            leaks.scan_file("kubelet", cp.log_dir / "kubelet.log")
            if os.environ.get("BENCH_VERBOSE"):
                print(op_log.read_text(errors="replace")[-5000:], file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between samples")
    a = parser.parse_args()
    with LeakWatch() as watch:
        problems = asyncio.run(main(a.minutes, a.interval, watch))
    code = watch.verdict()
    for problem in problems:
        print(f"soak failed: {problem}", file=sys.stderr)
    sys.exit(1 if problems or code else 0)
