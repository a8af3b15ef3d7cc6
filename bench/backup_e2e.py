"""End-to-end backup time: BackupSession creation -> Succeeded for a 200 MB dataset,
against plain `restic backup` of the same data, in the same run, on the same machine.

Each round creates a fresh local Repository, a Deployment and a BackupConfiguration on
the real test control plane, runs the operator in-process and the injected sidecar with
the pod runner, triggers one session and times it to Succeeded (which includes what
plain restic does not do: repository init, retention, `restic check` and stats, and
every status write). The baseline is `restic init` + `restic backup` into a fresh local
repository with the same binary. Rounds alternate which goes first.

Prints `name: value baseline ratio` lines: e2e_seconds (median) against restic_seconds,
and fixed_overhead_seconds (median of e2e - baseline). Target (issue #7): ratio <= 1.3.
Run: `.venv/bin/python bench/backup_e2e.py [--mb 200] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stash.api.crdgen import crds  # noqa: E402
from stash.contract.resources import (  # noqa: E402
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
)
from stash.controllers.trigger import create_backup_session  # noqa: E402
from stash.kube.client import JSON, Kube, Resource  # noqa: E402
from stash.kube.resources import DEPLOYMENTS, NAMESPACES, PODS, SECRETS  # noqa: E402
from stash.operator import Operator  # noqa: E402
from stash.settings import OperatorSettings  # noqa: E402
from stash_dev import ControlPlane  # noqa: E402
from stash_dev.demo_world import agent_env  # noqa: E402
from stash_dev.leaks import LeakWatch  # noqa: E402
from stash_dev.local import tools_bin  # noqa: E402
from stash_dev.podrunner import PodRunner  # noqa: E402

NS = "bench"
PASSWORD = "bench-password"
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CRD", namespaced=False)


def make_dataset(root: Path, mb: int) -> None:
    """Many small files plus a few large ones, incompressible."""
    rng = random.Random(7)
    small = root / "small"
    small.mkdir(parents=True)
    for i in range(2000):
        (small / f"f{i:04d}.txt").write_bytes(rng.randbytes(4096))
    left = mb * 1024 * 1024 - 2000 * 4096
    big = root / "big"
    big.mkdir()
    for i in range(4):
        (big / f"blob{i}.bin").write_bytes(rng.randbytes(left // 4))


def plain_restic(restic: str, data: Path, repo: Path) -> float:
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(repo))
    t = time.monotonic()
    subprocess.run([restic, "init"], env=env, check=True, capture_output=True)
    subprocess.run(
        [restic, "backup", "--host", "host-0", str(data)], env=env, check=True, capture_output=True
    )
    return time.monotonic() - t


async def ours(
    kube: Kube, runner: PodRunner, i: int, data: Path, repo: Path, env: list[JSON]
) -> float:
    name = f"r{i}"
    await kube.create(
        REPOSITORIES,
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": name},
            "spec": {
                "backend": {
                    "storageSecretName": "s",
                    "local": {"hostPath": {"path": str(repo)}, "mountPath": "/repo"},
                }
            },
        },
        NS,
    )
    labels = {"app": name}
    await kube.create(
        DEPLOYMENTS,
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [{"name": "app", "image": "x"}],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
        NS,
    )
    await kube.create(
        BACKUPCONFIGURATIONS,
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": name},
            "spec": {
                "schedule": "0 0 1 1 *",
                "repository": {"name": name},
                "target": {
                    "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "paths": ["/data"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                },
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                "runtimeSettings": {"container": {"env": env}},
            },
        },
        NS,
    )
    pod = await wait(lambda: injected_pod(kube, name), 120)
    bc = await wait(lambda: ready(kube, name), 60)
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    try:
        await asyncio.sleep(2)  # the sidecar is watching (as it would be, long before a tick)
        t = time.monotonic()
        session = await create_backup_session(kube, bc, dt.datetime.now(dt.UTC))
        phase = await wait(lambda: final(kube, session), 600)
        took = time.monotonic() - t
        if phase != "Succeeded":
            raise SystemExit(f"session {session} ended {phase}:\n{sidecar.logs()[-3000:]}")
        return took
    finally:
        await sidecar.stop(grace=30)  # SIGTERM, as a kubelet does: its leaks show


async def wait(probe, timeout: float):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise SystemExit("timed out")


async def injected_pod(kube: Kube, app: str) -> JSON | None:
    for p in (await kube.list(PODS, NS, label_selector=f"app={app}"))["items"]:
        names = [c["name"] for c in p["spec"]["containers"]]
        if (
            "stash" in names
            and p["spec"].get("nodeName")
            and not p["metadata"].get("deletionTimestamp")
        ):
            return p
    return None


async def ready(kube: Kube, name: str) -> JSON | None:
    bc = await kube.get(BACKUPCONFIGURATIONS, name, NS)
    return bc if (bc.get("status") or {}).get("phase") == "Ready" else None


async def final(kube: Kube, name: str) -> str | None:
    phase = ((await kube.get(BACKUPSESSIONS, name, NS)).get("status") or {}).get("phase")
    return phase if phase in ("Succeeded", "Failed", "Skipped") else None


async def main(mb: int, rounds: int, leaks: LeakWatch) -> None:
    restic_dir = tools_bin()
    restic = str(restic_dir / "restic")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        make_dataset(data, mb)
        cp = ControlPlane(work / "cluster")
        await asyncio.to_thread(cp.start)
        kube = await Kube.connect(cp.kubeconfig)
        runner = PodRunner(kube, work / "pods")
        op_task = None
        op_kube: Kube | None = None
        try:
            for crd in crds():
                await kube.create(CRDS, crd)
            await asyncio.sleep(3)
            await kube.create(NAMESPACES, {"metadata": {"name": NS}})
            await kube.create(
                SECRETS,
                {"metadata": {"name": "s"}, "stringData": {"RESTIC_PASSWORD": PASSWORD}},
                NS,
            )
            op_kube = await Kube.connect(cp.kubeconfig)
            op = Operator(
                op_kube,
                OperatorSettings(
                    watch_namespace=NS,
                    namespace=NS,
                    leader_elect=False,
                    metrics_port=0,
                    serve_webhook=False,
                    serve_snapshot_api=False,
                ),
            )
            op_task = asyncio.create_task(op.run())
            await op.ready.wait()
            env = agent_env(restic_dir)
            e2e, base = [], []
            for i in range(rounds):
                first_ours = i % 2 == 0
                if not first_ours:
                    base.append(
                        await asyncio.to_thread(plain_restic, restic, data, work / f"plain{i}")
                    )
                e2e.append(await ours(kube, runner, i, data, work / f"repo{i}", env))
                if first_ours:
                    base.append(
                        await asyncio.to_thread(plain_restic, restic, data, work / f"plain{i}")
                    )
                print(f"  round {i}: e2e {e2e[-1]:.2f}s restic {base[-1]:.2f}s", file=sys.stderr)
            m_e2e, m_base = statistics.median(e2e), statistics.median(base)
            overhead = statistics.median(a - b for a, b in zip(e2e, base, strict=True))
            print(f"e2e_seconds: {m_e2e:.2f} {m_base:.2f} {m_e2e / m_base:.2f}")
            print(f"fixed_overhead_seconds: {overhead:.2f} 0 -")
        finally:
            if op_task is not None:
                op_task.cancel()
                await asyncio.gather(op_task, return_exceptions=True)
            if op_kube is not None:
                await op_kube.close()
            await runner.close()
            await kube.close()
            cp.stop()
            leaks.scan_logs("bench", work)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    with LeakWatch() as watch:
        asyncio.run(main(a.mb, a.rounds, watch))
    sys.exit(watch.verdict())
