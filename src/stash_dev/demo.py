"""`stash dev demo` (what `make run` does): a real backup and restore on the local control
plane, end to end, as a list of named steps printed as they run.

It starts (or reuses) the control plane under `.stash-dev`, installs the CRDs, runs the
operator in this process, starts an S3 endpoint (moto_server) on 127.0.0.1, and in
namespace `demo` (recreated on every run, so running it again is safe) creates what a
user writes: a storage Secret, a local and an S3 Repository, a Deployment `web` with
data, a BackupConfiguration for it (local repository; the operator injects the backup
sidecar) and one for a PVC (S3 repository; backed up by a Job). It triggers both
backups, runs the injected sidecar and the Job's pod with the pod runner (no container
runtime here), shows the snapshots, restores `web` through a RestoreSession (the
injected `stash-init` init-container, run into a fresh directory) and verifies the
bytes.

Each step registers how to undo what it started on one `AsyncExitStack`, so whether the
demo ends or a step fails, the operator, the S3 endpoint and the pods stop in reverse
order. Blocking work (starting the control plane, building restic, file copies) runs in
threads, off the event loop. At the end the demo checks that neither it (with the
operator in it) nor a container it ran reported an unclosed aiohttp session, connector
or asyncio task on the way out (`stash_dev.leaks`); if one did, it prints the reports
and fails. The control plane stays up afterwards for exploring; `make cluster-down`
stops it.

Not for: tests (they use `ControlPlane` and `PodRunner` directly).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from stash.api.repository import Backend
from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube
from stash.kube.resources import PVS
from stash.operator import Operator
from stash.restic import Restic, ResticOptions, restic_target
from stash.settings import OperatorSettings
from stash_dev.demo_waits import (
    NS,
    DemoFailed,
    bound_claim,
    fresh_namespace,
    install_crds,
    invoker_ready,
    pod_with,
    restore_done,
    run_job,
    session_done,
    until,
)
from stash_dev.demo_world import (
    PASSWORD,
    agent_env,
    create_bucket,
    demo_objects,
    make_data,
    restore_session,
    s3_up,
    same_tree,
    session_summary,
)
from stash_dev.leaks import LeakWatch
from stash_dev.local import ensure_up, tools_bin
from stash_dev.podrunner import PodRunner, RunningContainer

__all__ = ["STEPS", "Demo", "run_demo"]


def say(text: str) -> None:
    """One line of the demo's story, on stdout."""
    print(f"==> {text}", flush=True)


class Demo:
    """What the steps share: where the demo lives, what it started, what it made. Each
    attribute is set by the step that makes it, before a later step reads it."""

    kube: Kube
    runner: PodRunner
    restic_dir: Path
    endpoint: str
    env: list[JSON]
    sidecar: RunningContainer

    def __init__(
        self, state_dir: Path, stack: contextlib.AsyncExitStack, leaks: LeakWatch | None = None
    ) -> None:
        self.state_dir = state_dir
        self.stack = stack
        self.leaks = leaks or LeakWatch()
        self.work = state_dir / "demo"
        self.kubeconfig = state_dir / "kubeconfig"


async def start_control_plane(demo: Demo) -> None:
    """Start the local control plane in the background, or reuse a running one."""
    cp, started = await asyncio.to_thread(ensure_up, demo.state_dir)
    say(f"control plane {'started' if started else 'already running'} at {cp.server}")
    demo.kube = await Kube.connect(demo.kubeconfig)
    demo.stack.push_async_callback(demo.kube.close)


async def prepare_files(demo: Demo) -> None:
    """Build the pinned restic (once) and write the sample data under `demo/data`."""
    demo.restic_dir = await asyncio.to_thread(tools_bin)
    demo.env = agent_env(demo.restic_dir)

    def fresh_data() -> None:
        shutil.rmtree(demo.work, ignore_errors=True)
        (demo.work / "data").mkdir(parents=True)
        make_data(demo.work / "data")

    await asyncio.to_thread(fresh_data)
    demo.runner = PodRunner(demo.kube, demo.work / "pods")
    # Read the containers' logs for leak reports once the runner has stopped them all.
    demo.stack.callback(demo.leaks.scan_logs, "container", demo.work / "pods")
    demo.stack.push_async_callback(demo.runner.close)  # kills every container it runs


async def install_the_crds(demo: Demo) -> None:
    """Create or update the CRDs and wait until they are established."""
    await install_crds(demo.kube)


async def start_operator(demo: Demo) -> None:
    """Run the operator in this process, watching namespace `demo`; stop it at the end."""
    op_kube = await Kube.connect(demo.kubeconfig)
    demo.stack.push_async_callback(op_kube.close)
    # The demo shows the operator's repair path (no webhook registered on the cluster).
    settings = OperatorSettings(
        watch_namespace=NS,
        namespace=NS,
        leader_elect=False,
        metrics_port=0,
        serve_webhook=False,
        serve_snapshot_api=False,
    )
    operator = Operator(op_kube, settings)
    task = asyncio.create_task(operator.run())

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    demo.stack.push_async_callback(stop)
    await asyncio.wait_for(operator.ready.wait(), 60)


async def recreate_namespace(demo: Demo) -> None:
    """Delete the previous run's namespace and create it anew. The operator is already
    running: it removes the finalizers of the previous run's objects, so the namespace
    can go."""
    await fresh_namespace(demo.kube)


async def start_s3(demo: Demo) -> None:
    """moto_server on a free loopback port, with the `demo` bucket; stopped at the end."""
    port = _free_port()
    log = await asyncio.to_thread((demo.work / "moto.log").open, "wb")
    demo.stack.callback(log.close)
    moto = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "moto_server"),
        *("-H", "127.0.0.1", "-p", str(port)),
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )

    async def stop() -> None:
        if moto.returncode is None:
            moto.terminate()
            try:
                await asyncio.wait_for(moto.wait(), 10)
            except TimeoutError:
                moto.kill()
                await moto.wait()

    demo.stack.push_async_callback(stop)
    demo.endpoint = f"http://127.0.0.1:{port}"
    await until(lambda: s3_up(demo.endpoint), "moto_server", 30)
    await asyncio.to_thread(create_bucket, demo.endpoint)
    say(f"S3 endpoint {demo.endpoint}, bucket demo")


async def create_world(demo: Demo) -> None:
    """Create what a user writes; put the sample data into the claim's volume too."""
    for res, body in demo_objects(demo.work, demo.endpoint, demo.env):
        await demo.kube.create(res, body, NS)
    pvc = await until(lambda: bound_claim(demo.kube, "data-pvc"), "PVC data-pvc bound", 60)
    pv = await demo.kube.get(PVS, pvc["spec"]["volumeName"])
    await asyncio.to_thread(
        shutil.copytree, demo.work / "data", pv["spec"]["hostPath"]["path"], dirs_exist_ok=True
    )


async def wait_for_invokers(demo: Demo) -> None:
    """Both BackupConfigurations reach phase Ready."""
    await invoker_ready(demo.kube, "web-backup")
    await invoker_ready(demo.kube, "pvc-backup")
    say("BackupConfigurations web-backup and pvc-backup are Ready")


async def run_sidecar(demo: Demo) -> None:
    """Run the `stash` sidecar the operator injected into web's pod."""
    pod = await pod_with(demo.kube, "stash", "containers")
    say(f"the operator injected the `stash` sidecar into {pod['metadata']['name']}; run it")
    demo.sidecar = await demo.runner.run(pod, "stash", volumes={"data": demo.work / "data"})


async def back_up(demo: Demo) -> None:
    """Trigger a BackupSession for each invoker, run the Job's pod, wait for both."""
    now = dt.datetime.now(dt.UTC)
    sessions = [
        await create_backup_session(
            demo.kube, await demo.kube.get(BACKUPCONFIGURATIONS, name, NS), now
        )
        for name in ("web-backup", "pvc-backup")
    ]
    say(f"triggered BackupSessions {sessions[0]} (sidecar) and {sessions[1]} (Job)")
    await run_job(demo.kube, demo.runner, f"stash-backup-{sessions[1]}-0")
    results = [await session_done(demo.kube, name) for name in sessions]
    for session in results:
        say(session_summary(session))
    if any(s["status"]["phase"] != "Succeeded" for s in results):
        raise DemoFailed("a backup did not succeed", f"sidecar log:\n{demo.sidecar.logs()}")


async def show_snapshots(demo: Demo) -> None:
    """The Repository's status, and the snapshots restic lists in it."""
    repo = await demo.kube.get(REPOSITORIES, "local-repo", NS)
    say(f"Repository local-repo: {repo.get('status')}")
    # On this host the local repository is the hostPath, not the pod's mountPath.
    backend = {
        "storageSecretName": "demo-secret",
        "local": {"mountPath": str(demo.work / "local-repo")},
    }
    scratch = demo.work / "scratch"
    restic = Restic(
        restic_target(
            Backend.model_validate(backend), {"RESTIC_PASSWORD": PASSWORD}, scratch_dir=scratch
        ),
        ResticOptions(
            binary=str(demo.restic_dir / "restic"), scratch_dir=str(scratch), no_cache=True
        ),
    )
    for snap in await restic.snapshots():
        when = f"{snap.time:%Y-%m-%d %H:%M:%S}"
        say(f"snapshot {snap.short_id} host={snap.hostname} paths={list(snap.paths)} {when}")


async def restore(demo: Demo) -> None:
    """Stop the sidecar, create RestoreSession web-restore, run the injected
    `stash-init` into a fresh directory, wait for the session."""
    await demo.sidecar.stop(grace=30)
    await demo.kube.create(RESTORESESSIONS, restore_session(demo.env), NS)
    pod = await pod_with(demo.kube, "stash-init", "initContainers")
    restored = demo.work / "restored"
    await asyncio.to_thread(restored.mkdir)
    init = await demo.runner.run(pod, "stash-init", volumes={"data": restored})
    code = await init.wait(300)
    rs = await restore_done(demo.kube, "web-restore")
    say(f"RestoreSession web-restore: {rs['status']['phase']} (stash-init exit code {code})")
    if rs["status"]["phase"] != "Succeeded":
        raise DemoFailed("the restore did not succeed", f"stash-init log:\n{init.logs()}")


async def verify(demo: Demo) -> None:
    """The restored tree equals the original, byte for byte."""
    same = await asyncio.to_thread(same_tree, demo.work / "data", demo.work / "restored")
    say(f"restored bytes equal the original: {same}")
    if not same:
        raise DemoFailed("the restored files differ from the original")


Step = tuple[str, Callable[[Demo], Awaitable[None]]]

STEPS: list[Step] = [
    ("starting (or reusing) the local control plane", start_control_plane),
    ("building restic (once) and writing the sample data", prepare_files),
    ("installing the CRDs", install_the_crds),
    ("starting the operator (controllers, cron engine, workload repair)", start_operator),
    (f"recreating namespace {NS}", recreate_namespace),
    ("starting an S3 endpoint (moto_server) on 127.0.0.1", start_s3),
    (
        "creating a Secret, two Repositories, Deployment web, PVC data-pvc, two invokers",
        create_world,
    ),
    ("waiting for the BackupConfigurations to be Ready", wait_for_invokers),
    ("running the injected backup sidecar", run_sidecar),
    ("backing up web (sidecar) and data-pvc (Job)", back_up),
    ("listing the snapshots", show_snapshots),
    ("restoring web through RestoreSession web-restore into a fresh directory", restore),
    ("comparing the restored bytes with the original", verify),
]


async def _demo(state_dir: Path, leaks: LeakWatch) -> int:
    state_dir = await asyncio.to_thread(state_dir.resolve)
    async with contextlib.AsyncExitStack() as stack:
        demo = Demo(state_dir, stack, leaks)
        for title, step in STEPS:
            say(title)
            try:
                await step(demo)
            except DemoFailed as exc:
                print(f"stash dev demo: {title}: {exc}", file=sys.stderr)
                if exc.log:
                    print(exc.log[-3000:], file=sys.stderr)
                return 1
    print()
    print("Done. Explore what happened:")
    print(f"  export KUBECONFIG={state_dir / 'kubeconfig'}")
    print(
        f"  the objects are in namespace {NS}; the local repository is {demo.work / 'local-repo'}"
    )
    print("  (the S3 endpoint and the operator stopped with the demo; the control plane")
    print("   keeps running until `make cluster-down`)")
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(state_dir: Path) -> int:
    """Run the demo; the process exit code."""
    os.environ.pop("KUBECONFIG", None)
    with LeakWatch() as leaks:
        code = asyncio.run(_demo(state_dir, leaks))
    if leaks.found:
        print("stash dev demo: a process ended with something left open:", file=sys.stderr)
        leaks.verdict(sys.stderr)
        return code or 1
    return code
