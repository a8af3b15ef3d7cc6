"""End-to-end restore time: RestoreSession creation -> Succeeded for a 200 MB snapshot,
against plain `restic restore` of the same snapshot, in the same run, on the same machine.

One BackupSession (as `backup_e2e.py` runs it) writes the snapshot first. Each round
then creates a Deployment and a RestoreSession for it on the real test control plane
(the operator runs in-process), waits for the pod with the injected `stash-init`
init-container, runs that container with the pod runner into an empty volume, and
times the RestoreSession to Succeeded. The pod's recreation is Kubernetes' part and
happens before the container starts: `agent_seconds` (init-container start ->
Succeeded) is the figure the target is about; `e2e_seconds` includes the rollout too.
The baseline is `restic restore <snapshot> --target <empty dir>` with the same binary
and the same repository. Rounds alternate which goes first.

Prints `name: value baseline ratio` lines: agent_seconds and e2e_seconds (medians)
against restic_seconds, and fixed_overhead_seconds (median of agent - baseline). Then
where the agent's time goes (medians, from the agent's own log lines' timestamps):
`startup` (container start -> its restore Lease held: interpreter, imports, reading the
RestoreSession, the Lease), `restic` (Lease -> "restored": the Repository, its Secret
and `restic restore`), `finish` (-> Succeeded seen: the host's entry, its Event, the
operator's phase); `imports` is the modules `stash restore` loads, timed inside a
fresh interpreter; `restic_open` is `restic cat config` (restic's own fixed cost, key
derivation: in the baseline too).
Target (issue #19): agent ratio <= 1.15.
Run: `.venv/bin/python bench/restore_e2e.py [--mb 200] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import backup_e2e as b

from stash.contract.resources import BACKUPSESSIONS, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, NAMESPACES, PODS, SECRETS
from stash.operator import Operator
from stash.settings import OperatorSettings
from stash_dev import ControlPlane
from stash_dev.demo_world import agent_env
from stash_dev.leaks import LeakWatch
from stash_dev.local import tools_bin
from stash_dev.podrunner import PodRunner

NS = b.NS


def plain_restore(restic: str, repo: Path, snapshot: str, target: Path) -> float:
    env = dict(os.environ, RESTIC_PASSWORD=b.PASSWORD, RESTIC_REPOSITORY=str(repo))
    t = time.monotonic()
    subprocess.run(
        [restic, "restore", snapshot, "--target", str(target)],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.monotonic() - t


IMPORTS = (
    "import time; t = time.perf_counter(); import stash.cli.main, stash.cli.agent, "
    "stash.agent.restore; print(time.perf_counter() - t)"
)


def import_seconds() -> float:
    """The imports of `stash restore`, timed inside a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS], check=True, capture_output=True, text=True
    )
    return float(done.stdout.strip())


def restic_open_seconds(restic: str, repo: Path) -> float:
    """restic's own fixed cost: open the repository (key derivation) and read its config."""
    env = dict(os.environ, RESTIC_PASSWORD=b.PASSWORD, RESTIC_REPOSITORY=str(repo))
    t = time.monotonic()
    subprocess.run([restic, "cat", "config"], env=env, check=True, capture_output=True)
    return time.monotonic() - t


def log_times(logs: str) -> dict[str, float]:
    """Wall-clock times of the agent's milestones, from its JSON log lines."""
    marks = {"lease": "acquired by", "restored": "restored "}
    found: dict[str, float] = {}
    for line in logs.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        for mark, text in marks.items():
            if mark not in found and text in str(rec.get("message", "")):
                found[mark] = dt.datetime.fromisoformat(rec["time"]).timestamp()
    return found


async def snapshot_of(kube: Kube) -> str:
    """The snapshot the backup round wrote (its short ID from the session's stats)."""
    for s in (await kube.list(BACKUPSESSIONS, NS))["items"]:
        for t in s["status"]["targets"]:
            for h in t.get("stats") or []:
                return str(h["snapshots"][0]["name"])
    raise SystemExit("the backup round recorded no snapshot")


async def init_pod(kube: Kube, app: str) -> JSON | None:
    for p in (await kube.list(PODS, NS, label_selector=f"app={app}"))["items"]:
        names = [c["name"] for c in p["spec"].get("initContainers") or []]
        if (
            "stash-init" in names
            and p["spec"].get("nodeName")
            and not p["metadata"].get("deletionTimestamp")
        ):
            return p
    return None


async def restored(kube: Kube, name: str) -> str | None:
    phase = ((await kube.get(RESTORESESSIONS, name, NS)).get("status") or {}).get("phase")
    return phase if phase in ("Succeeded", "Failed", "Unknown") else None


async def ours(
    kube: Kube, runner: PodRunner, i: int, repo_name: str, volume: Path, env: list[JSON]
) -> tuple[float, float, dict[str, float]]:
    """(e2e, agent, phases) seconds of one RestoreSession."""
    name = f"x{i}"
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
    await b.wait(lambda: init_pod_absent_ready(kube, name), 120)
    t = time.monotonic()
    await kube.create(
        RESTORESESSIONS,
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": name},
            "spec": {
                "repository": {"name": repo_name},
                "target": {
                    "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "rules": [{"sourceHost": "host-0", "paths": ["/data"]}],
                },
                "runtimeSettings": {"container": {"env": env}},
            },
        },
        NS,
    )
    pod = await b.wait(lambda: init_pod(kube, name), 120)
    started, started_wall = time.monotonic(), time.time()
    init = await runner.run(pod, "stash-init", volumes={"data": volume})
    try:
        phase = await b.wait(lambda: restored(kube, name), 600)
        done, done_wall = time.monotonic(), time.time()
        if phase != "Succeeded":
            raise SystemExit(f"RestoreSession {name} ended {phase}:\n{init.logs()[-3000:]}")
        marks = log_times(init.logs())
        if len(marks) != 2:
            raise SystemExit(f"the agent's log lacks its milestones:\n{init.logs()[-3000:]}")
        phases = {
            "startup": marks["lease"] - started_wall,
            "restic": marks["restored"] - marks["lease"],
            "finish": done_wall - marks["restored"],
        }
        return done - t, done - started, phases
    finally:
        await init.wait(60)


async def init_pod_absent_ready(kube: Kube, app: str) -> bool:
    """The Deployment's first pod exists (the RestoreSession then replaces it)."""
    return bool((await kube.list(PODS, NS, label_selector=f"app={app}"))["items"])


async def main(mb: int, rounds: int, leaks: LeakWatch) -> None:
    restic_dir = tools_bin()
    restic = str(restic_dir / "restic")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        b.make_dataset(data, mb)
        cp = ControlPlane(work / "cluster")
        await asyncio.to_thread(cp.start)
        kube = await Kube.connect(cp.kubeconfig)
        op_kube: Kube | None = None
        runner = PodRunner(kube, work / "pods")
        op_task = None
        try:
            for crd in b.crds():
                await kube.create(b.CRDS, crd)
            await asyncio.sleep(3)
            await kube.create(NAMESPACES, {"metadata": {"name": NS}})
            await kube.create(
                SECRETS,
                {"metadata": {"name": "s"}, "stringData": {"RESTIC_PASSWORD": b.PASSWORD}},
                NS,
            )
            op_kube = await Kube.connect(cp.kubeconfig)
            settings = OperatorSettings(
                watch_namespace=NS,
                namespace=NS,
                leader_elect=False,
                metrics_port=0,
                serve_webhook=False,
            )
            op = Operator(op_kube, settings)
            op_task = asyncio.create_task(op.run())
            await op.ready.wait()
            env = agent_env(restic_dir)
            repo = work / "repo"
            await b.ours(kube, runner, 0, data, repo, env)  # writes the snapshot (as r0)
            snapshot = await snapshot_of(kube)
            e2e, agent, base = [], [], []
            split: dict[str, list[float]] = {}
            for i in range(rounds):
                plain_first = i % 2 == 1
                target = work / f"plain{i}"
                if plain_first:
                    base.append(
                        await asyncio.to_thread(plain_restore, restic, repo, snapshot, target)
                    )
                volume = work / f"volume{i}"
                volume.mkdir()
                whole, part, phases = await ours(kube, runner, i, "r0", volume, env)
                e2e.append(whole)
                agent.append(part)
                for key, seconds in phases.items():
                    split.setdefault(key, []).append(seconds)
                split.setdefault("imports", []).append(await asyncio.to_thread(import_seconds))
                split.setdefault("restic_open", []).append(
                    await asyncio.to_thread(restic_open_seconds, restic, repo)
                )
                if not plain_first:
                    base.append(
                        await asyncio.to_thread(plain_restore, restic, repo, snapshot, target)
                    )
                print(
                    f"  round {i}: e2e {e2e[-1]:.2f}s agent {agent[-1]:.2f}s "
                    f"restic {base[-1]:.2f}s",
                    file=sys.stderr,
                )
            m_base = statistics.median(base)
            m_agent, m_e2e = statistics.median(agent), statistics.median(e2e)
            overhead = statistics.median(a - p for a, p in zip(agent, base, strict=True))
            print(f"restore_agent_seconds: {m_agent:.2f} {m_base:.2f} {m_agent / m_base:.2f}")
            print(f"restore_e2e_seconds: {m_e2e:.2f} {m_base:.2f} {m_e2e / m_base:.2f}")
            print(f"restore_fixed_overhead_seconds: {overhead:.2f} 0 -")
            for key, values in split.items():
                print(f"restore_{key}_seconds: {statistics.median(values):.3f} 0 -")
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
