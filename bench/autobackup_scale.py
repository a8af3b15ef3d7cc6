"""Auto-backup scale (issue #14 item 5): 500 annotated Deployments across 50 namespaces
converge — Repository, Ready BackupConfiguration, sidecar — against the same number of
hand-written Repositories and BackupConfigurations measured in the same run.

One real test control plane and one operator process (all namespaces, webhook off, so
the sidecars come from the operator's repair path). Two phases, each in its own 50
namespaces with 10 Deployments (replicas 0) per namespace:

* hand-written: per Deployment, the user creates the Repository and the
  BackupConfiguration that auto-backup would make;
* auto-backup: one BackupBlueprint, and per Deployment only the annotated Deployment.

Converged = every BackupConfiguration Ready (which needs its sidecar injected:
StashSidecarInjected) and every Repository there. Between the phases, and after the
second, the operator settles (its queues stay empty); then 15 s of quiet show whether
anything loops.

Prints `name: value baseline ratio` lines:
* autobackup_converge_seconds: auto-backup's time, from its first create to converged;
  baseline = the hand-written phase's time (target ratio <= 1.3);
* operator_peak_rss_mb: the operator's VmHWM; baseline = its RSS right after start-up;
* settle_seconds_after_converge: from convergence until the operator's work queues stay
  empty for 5 s (the rollouts' tail; a hot loop never settles, 180 s cap); baseline =
  auto-backup's converge time;
* reconciles_in_quiet_15s: reconciles of all controllers in 15 s after that; baseline =
  the number of workloads of both phases (a hot loop makes this grow with time).
Run: `.venv/bin/python bench/autobackup_scale.py [--workloads 500] [--namespaces 50]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stash.contract.resources import (  # noqa: E402
    BACKUPBLUEPRINTS,
    BACKUPCONFIGURATIONS,
    REPOSITORIES,
)
from stash.kube.client import Kube  # noqa: E402
from stash.kube.resources import CRDS, DEPLOYMENTS, NAMESPACES, SECRETS  # noqa: E402
from stash_dev import ControlPlane  # noqa: E402
from stash_dev.leaks import LeakWatch  # noqa: E402

ANN = "stash.appscode.com/"
BLUEPRINT = "bench-bp"
BACKEND = {
    "storageSecretName": "s",
    "s3": {
        "endpoint": "minio.bench.svc:9000",
        "bucket": "b",
        "prefix": "${TARGET_NAMESPACE}/${TARGET_NAME}",
    },
}
RETENTION = {"name": "keep", "keepLast": 5, "prune": True}


def _kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reconciles(port: int) -> dict[str, float]:
    """Reconciles so far, per controller (from the operator's /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    pattern = r'^stash_operator_reconcile_total\{controller="([^"]+)"\} (\S+)$'
    return {c: float(v) for c, v in re.findall(pattern, text, re.M)}


def _queued(port: int) -> float:
    """Keys waiting in the operator's work queues (from its /metrics)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(
        float(v) for v in re.findall(r"^stash_operator_queue_depth\{[^}]*\} (\S+)$", text, re.M)
    )


async def _settle(port: int) -> float:
    """Wait (at most 180 s) until the operator's queues stay empty for 5 s; the seconds
    it took. The next phase starts without the previous one's tail (rollouts, status
    churn), and a hot loop would never settle."""
    t0 = time.monotonic()
    quiet = 0
    while quiet < 5 and time.monotonic() - t0 < 180:
        quiet = quiet + 1 if _queued(port) == 0 else 0
        await asyncio.sleep(1)
    return time.monotonic() - t0


def _deployment(name: str, annotations: dict[str, str] | None) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "app", "image": "busybox"}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def _hand_written(ns: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Repository and BackupConfiguration auto-backup would make for `name`."""
    backend = {**BACKEND, "s3": {**BACKEND["s3"], "prefix": f"{ns}/{name}"}}
    repo = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": f"deployment-{name}"},
        "spec": {"backend": backend},
    }
    bc = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": f"deployment-{name}"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "repository": {"name": f"deployment-{name}"},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "paths": ["/data"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            "retentionPolicy": RETENTION,
        },
    }
    return repo, bc


async def _install(kube: Kube, namespaces: list[str]) -> None:
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        await kube.create(CRDS, yaml.safe_load(path.read_text()))
    await asyncio.sleep(3)  # CRDs become Established
    for ns in ["bench-system", *namespaces]:
        await kube.create(NAMESPACES, {"metadata": {"name": ns}})
    for ns in namespaces:
        await kube.create(
            SECRETS, {"metadata": {"name": "s"}, "stringData": {"RESTIC_PASSWORD": "x"}}, ns
        )
    await kube.create(
        BACKUPBLUEPRINTS,
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupBlueprint",
            "metadata": {"name": BLUEPRINT},
            "spec": {"backend": BACKEND, "schedule": "0 0 1 1 *", "retentionPolicy": RETENTION},
        },
    )


async def _converged(kube: Kube, namespaces: list[str], want: int) -> bool:
    ready = repos = 0
    for ns in namespaces:
        items, _ = await kube.list_all(BACKUPCONFIGURATIONS, ns)
        ready += sum((o.get("status") or {}).get("phase") == "Ready" for o in items)
        items, _ = await kube.list_all(REPOSITORIES, ns)
        repos += len(items)
    print(f"  ready {ready}/{want}, repositories {repos}/{want}", file=sys.stderr)
    return ready >= want and repos >= want


async def _phase(kube: Kube, namespaces: list[str], per_ns: int, auto: bool) -> float:
    """Create the phase's objects; the seconds until everything converged."""
    sem = asyncio.Semaphore(32)
    annotations = {
        f"{ANN}backup-blueprint": BLUEPRINT,
        f"{ANN}target-paths": "/data",
        f"{ANN}volume-mounts": "data:/data",
    }

    async def one(ns: str, i: int) -> None:
        name = f"web-{i:02d}"
        async with sem:
            await kube.create(DEPLOYMENTS, _deployment(name, annotations if auto else None), ns)
            if not auto:
                repo, bc = _hand_written(ns, name)
                await kube.create(REPOSITORIES, repo, ns)
                await kube.create(BACKUPCONFIGURATIONS, bc, ns)

    t0 = time.monotonic()
    await asyncio.gather(*(one(ns, i) for ns in namespaces for i in range(per_ns)))
    want = len(namespaces) * per_ns
    while not await _converged(kube, namespaces, want):
        if time.monotonic() - t0 > 900:
            raise SystemExit(f"{'auto' if auto else 'hand-written'}: not converged within 900 s")
        await asyncio.sleep(1)
    return time.monotonic() - t0


def _start_operator(kubeconfig: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        STASH_METRICS_PORT=str(port),
        STASH_METRICS_HOST="127.0.0.1",
        STASH_LEADER_ELECT="false",
        STASH_SERVE_WEBHOOK="false",
        STASH_SERVE_SNAPSHOT_API="false",
        STASH_LOG_FORMAT=os.environ.get("STASH_LOG_FORMAT", "text"),  # stderr is a pipe
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stash.cli.main",
            "operator",
            f"--kubeconfig={kubeconfig}",
            "--operator-namespace=bench-system",
            "--log-level=WARNING",
        ],
        env=env,
        stderr=subprocess.PIPE,
    )


async def main(workloads: int, namespaces: int, leaks: LeakWatch) -> None:
    per_ns = max(1, workloads // namespaces)
    hand = [f"hw-{i:02d}" for i in range(namespaces)]
    auto = [f"ab-{i:02d}" for i in range(namespaces)]
    with tempfile.TemporaryDirectory() as tmp:
        cp = ControlPlane(Path(tmp) / "cluster")
        await asyncio.to_thread(cp.start)
        op: subprocess.Popen[bytes] | None = None
        kube = await Kube.connect(cp.kubeconfig)
        try:
            await _install(kube, [*hand, *auto])
            port = _free_port()
            op = _start_operator(cp.kubeconfig, port)
            leaks.follow("operator", op.stderr)
            await asyncio.sleep(5)
            idle_rss = _kb(op.pid, "VmRSS") / 1024
            hand_s = await _phase(kube, hand, per_ns, auto=False)
            await _settle(port)
            auto_s = await _phase(kube, auto, per_ns, auto=True)
            settle_s = await _settle(port)
            before = _reconciles(port)
            await asyncio.sleep(15)
            after = _reconciles(port)
            per = {c: after[c] - before.get(c, 0.0) for c in after if after[c] > before.get(c, 0.0)}
            print(f"  reconciles in the quiet window: {per}", file=sys.stderr)
            quiet = sum(per.values())
            peak = _kb(op.pid, "VmHWM") / 1024
            total = per_ns * namespaces
            print(f"autobackup_converge_seconds: {auto_s:.1f} {hand_s:.1f} {auto_s / hand_s:.2f}")
            print(f"operator_peak_rss_mb: {peak:.0f} {idle_rss:.0f} {peak / idle_rss:.2f}")
            ratio = settle_s / auto_s
            print(f"settle_seconds_after_converge: {settle_s:.1f} {auto_s:.1f} {ratio:.2f}")
            print(f"reconciles_in_quiet_15s: {quiet:.0f} {2 * total} {quiet / (2 * total):.2f}")
        finally:
            if op is not None:
                op.terminate()
                op.wait(timeout=30)
            await kube.close()
            cp.stop()
            leaks.scan_logs("bench", Path(tmp))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--workloads", type=int, default=500)
    parser.add_argument("--namespaces", type=int, default=50)
    a = parser.parse_args()
    with LeakWatch() as watch:
        asyncio.run(main(a.workloads, a.namespaces, watch))
    sys.exit(watch.verdict())
