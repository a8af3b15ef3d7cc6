"""`stash dev demo` (what `make run` does): a real backup and restore on the local control
plane, end to end, printed step by step.

It starts (or reuses) the control plane under `.stash-dev`, installs the CRDs, runs the
operator in this process, starts an S3 endpoint (moto_server) on 127.0.0.1, and in
namespace `demo` (recreated on every run, so running it again is safe) creates what a
user writes: a storage Secret, a local and an S3 Repository, a Deployment `web` with
data, a BackupConfiguration for it (local repository; the operator injects the backup
sidecar) and one for a PVC (S3 repository; backed up by a Job). It triggers both
backups, runs the injected sidecar and the Job's pod with the pod runner (no container
runtime here), shows the snapshots, restores `web` through a RestoreSession (the
injected `stash-init` init-container, run into a fresh directory) and verifies the
bytes. The control plane stays up afterwards for exploring; `make cluster-down` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from stash.api.crdgen import crds
from stash.api.repository import Backend
from stash.contract.resources import (
    BACKUPCONFIGURATIONS,
    BACKUPSESSIONS,
    REPOSITORIES,
    RESTORESESSIONS,
)
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Conflict, Kube, NotFound, Resource
from stash.kube.resources import JOBS, NAMESPACES, PODS, PVCS
from stash.operator import Operator
from stash.restic import Restic, ResticOptions, restic_target
from stash.settings import OperatorSettings
from stash_dev.controlplane import ControlPlaneError
from stash_dev.demo_world import (
    PASSWORD,
    agent_env,
    create_bucket,
    demo_objects,
    make_data,
    s3_up,
    same_tree,
)
from stash_dev.local import ensure_up, tools_bin
from stash_dev.podrunner import PodRunner, RunningContainer

NS = "demo"
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CRD", namespaced=False)
PVS = Resource("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)
T = TypeVar("T")


def say(text: str) -> None:
    """One step of the demo, on stdout."""
    print(f"==> {text}", flush=True)


async def _until(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 120) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.5)
    raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _install_crds(kube: Kube) -> None:
    for crd in crds():
        try:
            await kube.create(CRDS, crd)
        except Conflict:
            live = await kube.get(CRDS, crd["metadata"]["name"])
            crd["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            await kube.replace(CRDS, crd)

    async def established() -> bool:
        for crd in crds():
            live = await kube.get(CRDS, crd["metadata"]["name"])
            conds = {
                c["type"]: c["status"] for c in (live.get("status") or {}).get("conditions", [])
            }
            if conds.get("Established") != "True":
                return False
        return True

    await _until(established, "the CRDs to be established", 60)


async def _fresh_namespace(kube: Kube) -> None:
    with contextlib.suppress(NotFound):
        await kube.delete(NAMESPACES, NS)

    async def gone() -> bool:
        try:
            await kube.get(NAMESPACES, NS)
        except NotFound:
            return True
        return False

    await _until(gone, f"the previous namespace {NS} to go", 120)
    await kube.create(NAMESPACES, {"metadata": {"name": NS}})


async def _ready(kube: Kube, name: str) -> None:
    async def probe() -> bool:
        bc = await kube.get(BACKUPCONFIGURATIONS, name, NS)
        return (bc.get("status") or {}).get("phase") == "Ready"

    await _until(probe, f"BackupConfiguration {name} to be Ready", 60)


async def _pod_with(kube: Kube, container: str, field: str) -> JSON:
    async def probe() -> JSON | None:
        pods: list[JSON] = (await kube.list(PODS, NS, label_selector="app=web"))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        for p in live:
            names = [c["name"] for c in p["spec"].get(field) or []]
            if container in names and p["spec"].get("nodeName") and len(live) == 1:
                return p
        return None

    return await _until(probe, f"a web pod with the injected {container}", 120)


async def _session_done(kube: Kube, name: str) -> JSON:
    async def probe() -> JSON | None:
        s = await kube.get(BACKUPSESSIONS, name, NS)
        return (
            s
            if (s.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Skipped")
            else None
        )

    return await _until(probe, f"BackupSession {name} to finish", 180)


async def _run_job(kube: Kube, runner: PodRunner, job: str) -> None:
    async def scheduled() -> JSON | None:
        pods = (await kube.list(PODS, NS, label_selector=f"job-name={job}"))["items"]
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    await _until(lambda: _exists(kube, JOBS, job), f"Job {job}", 60)
    pod = await _until(scheduled, f"the pod of Job {job}", 60)
    for c in await runner.run_pod(pod, report_status=True):
        await c.wait(timeout=300)


async def _exists(kube: Kube, res: Resource, name: str) -> bool:
    try:
        await kube.get(res, name, NS)
    except NotFound:
        return False
    return True


async def _demo(state_dir: Path) -> int:
    state_dir = await asyncio.to_thread(state_dir.resolve)
    say("starting (or reusing) the local control plane")
    cp, started = await asyncio.to_thread(ensure_up, state_dir)
    say(f"control plane {'started' if started else 'already running'} at {cp.server}")
    restic_dir = tools_bin()
    demo = state_dir / "demo"
    shutil.rmtree(demo, ignore_errors=True)
    (demo / "data").mkdir(parents=True)
    make_data(demo / "data")
    kubeconfig = state_dir / "kubeconfig"
    kube = await Kube.connect(kubeconfig)
    moto: subprocess.Popen[bytes] | None = None
    operator_task: asyncio.Task[None] | None = None
    op_kube: Kube | None = None
    runner = PodRunner(kube, demo / "pods")
    sidecar: RunningContainer | None = None
    try:
        say("installing the CRDs")
        await _install_crds(kube)
        say("starting the operator (controllers, cron engine, workload repair)")
        op_kube = await Kube.connect(kubeconfig)
        settings = OperatorSettings(
            watch_namespace=NS, namespace=NS, leader_elect=False, metrics_port=0
        )
        operator = Operator(op_kube, settings)
        operator_task = asyncio.create_task(operator.run())
        await asyncio.wait_for(operator.ready.wait(), 60)
        # The operator runs before the old namespace is deleted: it removes the
        # finalizers of the previous run's objects, so the namespace can go.
        say(f"recreating namespace {NS}")
        await _fresh_namespace(kube)
        port = _free_port()
        say(f"starting an S3 endpoint (moto_server) on 127.0.0.1:{port}")
        moto = subprocess.Popen(  # noqa: ASYNC220 - a server started once
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=(demo / "moto.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        endpoint = f"http://127.0.0.1:{port}"
        await _until(lambda: s3_up(endpoint), "moto_server", 30)
        await asyncio.to_thread(create_bucket, endpoint)
        env = agent_env(restic_dir)
        say("creating a Secret, two Repositories, Deployment web, PVC data-pvc, two invokers")
        for res, body in demo_objects(demo, endpoint, env):
            await kube.create(res, body, NS)
        pvc = await _until(lambda: _bound(kube, "data-pvc"), "PVC data-pvc bound", 60)
        pv = await kube.get(PVS, pvc["spec"]["volumeName"])
        shutil.copytree(demo / "data", pv["spec"]["hostPath"]["path"], dirs_exist_ok=True)
        await _ready(kube, "web-backup")
        await _ready(kube, "pvc-backup")
        say("BackupConfigurations web-backup and pvc-backup are Ready")
        pod = await _pod_with(kube, "stash", "containers")
        say(f"the operator injected the `stash` sidecar into {pod['metadata']['name']}; run it")
        sidecar = await runner.run(pod, "stash", volumes={"data": demo / "data"})
        now = dt.datetime.now(dt.UTC)
        web_session = await create_backup_session(
            kube, await kube.get(BACKUPCONFIGURATIONS, "web-backup", NS), now
        )
        pvc_session = await create_backup_session(
            kube, await kube.get(BACKUPCONFIGURATIONS, "pvc-backup", NS), now
        )
        say(f"triggered BackupSessions {web_session} (sidecar) and {pvc_session} (Job)")
        await _run_job(kube, runner, f"stash-backup-{pvc_session}-0")
        results = [await _session_done(kube, web_session), await _session_done(kube, pvc_session)]
        for s in results:
            status = s["status"]
            stats = status["targets"][0].get("stats") or []
            detail = "; ".join(
                f"{h['hostname']}: {h['phase']}"
                + (f" ({h.get('error')})" if h.get("error") else "")
                + "".join(
                    f", snapshot {x.get('name')} of {x.get('path')} ({x.get('totalSize')})"
                    for x in h.get("snapshots") or []
                )
                for h in stats
            )
            took = status.get("sessionDuration")
            say(f"BackupSession {s['metadata']['name']}: {status['phase']} in {took}: {detail}")
        if any(s["status"]["phase"] != "Succeeded" for s in results):
            print(f"sidecar log:\n{sidecar.logs()[-3000:]}", file=sys.stderr)
            return 1
        repo = await kube.get(REPOSITORIES, "local-repo", NS)
        say(f"Repository local-repo: {repo.get('status')}")
        # On this host the local repository is the hostPath, not the pod's mountPath.
        host_backend = {
            "storageSecretName": "demo-secret",
            "local": {"mountPath": str(demo / "local-repo")},
        }
        restic = Restic(
            restic_target(
                Backend.model_validate(host_backend),
                {"RESTIC_PASSWORD": PASSWORD},
                scratch_dir=demo / "scratch",
            ),
            ResticOptions(
                binary=str(restic_dir / "restic"), scratch_dir=str(demo / "scratch"), no_cache=True
            ),
        )
        for snap in await restic.snapshots():
            when = f"{snap.time:%Y-%m-%d %H:%M:%S}"
            say(f"snapshot {snap.short_id} host={snap.hostname} paths={list(snap.paths)} {when}")
        say("restoring web through RestoreSession web-restore into a fresh directory")
        sidecar.terminate()
        await sidecar.wait(30)
        sidecar = None
        await kube.create(
            RESTORESESSIONS,
            {
                "apiVersion": "stash.appscode.com/v1beta1",
                "kind": "RestoreSession",
                "metadata": {"name": "web-restore"},
                "spec": {
                    "repository": {"name": "local-repo"},
                    "target": {
                        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "rules": [{"paths": ["/data"]}],
                    },
                    "runtimeSettings": {"container": {"env": env}},
                },
            },
            NS,
        )
        pod = await _pod_with(kube, "stash-init", "initContainers")
        restored = demo / "restored"
        restored.mkdir()
        init = await runner.run(pod, "stash-init", volumes={"data": restored})
        code = await init.wait(300)

        async def rs_done() -> JSON | None:
            rs = await kube.get(RESTORESESSIONS, "web-restore", NS)
            return (
                rs
                if (rs.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Unknown")
                else None
            )

        rs = await _until(rs_done, "RestoreSession web-restore to finish", 120)
        say(f"RestoreSession web-restore: {rs['status']['phase']} (stash-init exit code {code})")
        same = same_tree(demo / "data", restored)
        say(f"restored bytes equal the original: {same}")
        if rs["status"]["phase"] != "Succeeded" or not same:
            print(f"stash-init log:\n{init.logs()[-3000:]}", file=sys.stderr)
            return 1
        print()
        print("Done. Explore what happened:")
        print(f"  export KUBECONFIG={kubeconfig}")
        print(f"  the objects are in namespace {NS}; the local repository is {demo / 'local-repo'}")
        print("  (the S3 endpoint and the operator stopped with the demo; the control plane")
        print("   keeps running until `make cluster-down`)")
        return 0
    finally:
        if sidecar is not None:
            sidecar.kill()
        await runner.close()
        if operator_task is not None:
            operator_task.cancel()
            await asyncio.gather(operator_task, return_exceptions=True)
        if op_kube is not None:
            await op_kube.close()
        if moto is not None:
            moto.terminate()
            moto.wait(timeout=10)
        await kube.close()


async def _bound(kube: Kube, claim: str) -> JSON | None:
    pvc = await kube.get(PVCS, claim, NS)
    return pvc if (pvc.get("status") or {}).get("phase") == "Bound" else None


def run_demo(state_dir: Path) -> int:
    """Run the demo; the process exit code."""
    os.environ.pop("KUBECONFIG", None)
    return asyncio.run(_demo(state_dir))


__all__ = ["run_demo"]
_ = Any
