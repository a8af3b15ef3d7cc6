"""Database backup time and memory (issue #15): a BackupSession of a PostgreSQL AppBinding
with `postgres-backup-15` -> Succeeded, against `pg_dumpall | restic backup --stdin` by
hand on the same data, in the same run, on the same machine; and the agent's peak RSS.

One real test control plane, the operator in-process, a PostgreSQL 15 server and a
rest-server on loopback ports. The database holds `--mb` MB of table data (about that
much dump). Each round: ours = a fresh Repository and BackupConfiguration, one session,
its Job's containers run by the pod runner, timed from session creation to Succeeded
(which includes what the pipe does not: repository init, retention, `restic check` and
stats, every status write); the baseline = `restic init` + `pg_dumpall | restic backup
--stdin --stdin-filename dumpfile.sql` into a fresh repository on the same rest-server.
Rounds alternate which goes first. While the dump step runs, the agent's (the `stash`
process) VmHWM and the step's whole process tree RSS (agent + restic + pg_dumpall) are
sampled every 50 ms.

Prints `name: value baseline ratio` lines: db_session_seconds (median) against
pipe_seconds (target ratio <= 1.15 for large dumps; a fixed few seconds of session work
dominate small ones), agent_peak_rss_mb against the 200 MB budget, step_tree_peak_rss_mb.
Run: `.venv/bin/python bench/db_backup.py [--mb 200] [--rounds 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.support.databases import PostgresServer  # noqa: E402
from tests.support.restic_tools import rest_server_binary, restic_binary  # noqa: E402
from tests.support.storage import RestServer  # noqa: E402

from stash.api.crdgen import crds  # noqa: E402
from stash.contract.resources import (  # noqa: E402
    APPBINDINGS,
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
)
from stash.controllers.trigger import create_backup_session  # noqa: E402
from stash.kube.client import JSON, Kube, Resource  # noqa: E402
from stash.kube.resources import NAMESPACES, PODS, SECRETS  # noqa: E402
from stash.operator import Operator  # noqa: E402
from stash.settings import OperatorSettings  # noqa: E402
from stash_dev import ControlPlane  # noqa: E402
from stash_dev.demo_world import agent_env  # noqa: E402
from stash_dev.podrunner import PodRunner  # noqa: E402

NS = "bench"
PASSWORD = "bench-password"
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CRD", namespaced=False)


def fill(pg: PostgresServer, mb: int) -> None:
    """About `mb` MB of rows (text that compresses like real data, not like zeros)."""
    pg.sql("CREATE DATABASE bench")
    pg.sql("CREATE TABLE t (id bigint PRIMARY KEY, a text, b text, n numeric)", "bench")
    rows = mb * 1024 * 1024 // 110
    step = 200_000
    for start in range(1, rows + 1, step):
        end = min(rows, start + step - 1)
        pg.sql(
            "INSERT INTO t SELECT g, md5(g::text) || md5((g * 7)::text), "
            f"'row ' || g || ' ' || md5((g * 13)::text), g / 7.0 "
            f"FROM generate_series({start}, {end}) g",
            "bench",
        )


def pipe(pg: PostgresServer, restic: str, url: str) -> float:
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=url)
    env |= {"PGPASSWORD": pg.password, "PGHOST": "127.0.0.1", "PGPORT": str(pg.port)}
    env["PGUSER"] = "postgres"
    t = time.monotonic()
    subprocess.run([restic, "init"], env=env, check=True, capture_output=True)
    subprocess.run(
        f"set -o pipefail; pg_dumpall | {restic} backup --stdin --stdin-filename dumpfile.sql "
        "--host host-0",
        shell=True,
        executable="/bin/bash",
        env=env,
        check=True,
        capture_output=True,
    )
    return time.monotonic() - t


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += _tree(int(child))
    return out


def _kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def sample(pid: int, done: asyncio.Event, peaks: dict[str, int]) -> None:
    """Keep the peaks of the `stash` process's VmHWM and the tree's summed VmRSS."""
    while not done.is_set():
        tree = _tree(pid)
        for p in tree:
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes()
            except OSError:
                continue
            if b"stash" in cmd and b"backup-pg" in cmd:
                peaks["agent"] = max(peaks.get("agent", 0), _kb(p, "VmHWM"))
        peaks["tree"] = max(peaks.get("tree", 0), sum(_kb(p, "VmRSS") for p in tree))
        await asyncio.sleep(0.05)


async def ours(
    kube: Kube, runner: PodRunner, i: int, rest: RestServer, env: list[JSON]
) -> tuple[float, dict[str, int]]:
    name = f"r{i}"
    await kube.create(
        REPOSITORIES,
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": name},
            "spec": {"backend": {"storageSecretName": "s", "rest": {"url": f"{rest.url}/{name}"}}},
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
                "task": {"name": "postgres-backup-15"},
                "repository": {"name": name},
                "target": {
                    "ref": {
                        "apiVersion": "appcatalog.appscode.com/v1alpha1",
                        "kind": "AppBinding",
                        "name": "db",
                    }
                },
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                "runtimeSettings": {
                    "container": {"env": env},
                    "pod": {"securityContext": {"runAsUser": 0}},
                },
            },
        },
        NS,
    )
    bc = await wait(lambda: ready(kube, name), 60)
    t = time.monotonic()
    session = await create_backup_session(kube, bc, dt.datetime.now(dt.UTC))
    job = f"stash-backup-{session}-0"
    pod = await wait(lambda: scheduled(kube, job), 60)
    peaks: dict[str, int] = {}
    for step in [c["name"] for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]]:
        container = await runner.run(pod, step, report_status=True)
        done = asyncio.Event()
        watcher = asyncio.create_task(sample(container.pid, done, peaks))
        code = await container.wait(3600)
        done.set()
        await watcher
        if code != 0:
            raise SystemExit(f"{step} exited {code}:\n{container.logs()[-3000:]}")
        if os.environ.get("BENCH_VERBOSE"):
            print(container.logs(), file=sys.stderr)
    phase = await wait(lambda: final(kube, session), 600)
    took = time.monotonic() - t
    if phase != "Succeeded":
        raise SystemExit(f"session {session} ended {phase}")
    return took, peaks


async def wait(probe, timeout: float):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise SystemExit("timed out")


async def ready(kube: Kube, name: str) -> JSON | None:
    bc = await kube.get(BACKUPCONFIGURATIONS, name, NS)
    return bc if (bc.get("status") or {}).get("phase") == "Ready" else None


async def scheduled(kube: Kube, job: str) -> JSON | None:
    pods = (await kube.list(PODS, NS, label_selector=f"job-name={job}"))["items"]
    return pods[0] if pods and pods[0]["spec"].get("nodeName") else None


async def final(kube: Kube, name: str) -> str | None:
    phase = ((await kube.get(BACKUPSESSIONS, name, NS)).get("status") or {}).get("phase")
    return phase if phase in ("Succeeded", "Failed", "Skipped") else None


async def setup(kube: Kube, pg: PostgresServer) -> None:
    for crd in crds():
        await kube.create(CRDS, crd)
    await asyncio.sleep(3)
    await kube.create(NAMESPACES, {"metadata": {"name": NS}})
    await kube.create(
        SECRETS, {"metadata": {"name": "s"}, "stringData": {"RESTIC_PASSWORD": PASSWORD}}, NS
    )
    await kube.create(
        SECRETS,
        {
            "metadata": {"name": "pg"},
            "stringData": {"username": "postgres", "password": pg.password},
        },
        NS,
    )
    await kube.create(
        APPBINDINGS,
        {
            "apiVersion": "appcatalog.appscode.com/v1alpha1",
            "kind": "AppBinding",
            "metadata": {"name": "db"},
            "spec": {
                "clientConfig": {"url": f"postgres://127.0.0.1:{pg.port}/"},
                "secret": {"name": "pg"},
            },
        },
        NS,
    )


async def main(mb: int, rounds: int) -> None:
    restic = restic_binary()
    pg = PostgresServer()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rest = RestServer(rest_server_binary(), work / "rest", work / "rest.log")
        rest.start()
        pg.start()
        cp = ControlPlane(work / "cluster")
        await asyncio.to_thread(cp.start)
        kube = await Kube.connect(cp.kubeconfig)
        runner = PodRunner(kube, work / "pods")
        op_task = None
        try:
            t = time.monotonic()
            await asyncio.to_thread(fill, pg, mb)
            size = pg.sql("SELECT pg_database_size('bench') / 1048576")
            print(f"  {size} MB database filled in {time.monotonic() - t:.0f}s", file=sys.stderr)
            await setup(kube, pg)
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
            env = agent_env(Path(restic).parent)
            sessions, base, agent, tree = [], [], [], []
            for i in range(rounds):
                url = f"rest:{rest.url}/plain{i}"
                if i % 2:
                    base.append(await asyncio.to_thread(pipe, pg, restic, url))
                took, peaks = await ours(kube, runner, i, rest, env)
                sessions.append(took)
                agent.append(peaks.get("agent", 0) / 1024)
                tree.append(peaks.get("tree", 0) / 1024)
                if not i % 2:
                    base.append(await asyncio.to_thread(pipe, pg, restic, url))
                print(
                    f"  round {i}: session {sessions[-1]:.2f}s pipe {base[-1]:.2f}s "
                    f"agent {agent[-1]:.0f} MB tree {tree[-1]:.0f} MB",
                    file=sys.stderr,
                )
            m_ours, m_base = statistics.median(sessions), statistics.median(base)
            print(f"db_session_seconds: {m_ours:.2f} {m_base:.2f} {m_ours / m_base:.2f}")
            print(f"agent_peak_rss_mb: {max(agent):.0f} 200 {max(agent) / 200:.2f}")
            print(f"step_tree_peak_rss_mb: {max(tree):.0f} 200 {max(tree) / 200:.2f}")
        finally:
            if op_task is not None:
                op_task.cancel()
                await asyncio.gather(op_task, return_exceptions=True)
                await op_kube.close()
            await runner.close()
            await kube.close()
            cp.stop()
            pg.stop()
            rest.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.mb, args.rounds))
