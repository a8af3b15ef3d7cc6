"""A Repository on a local backend: `kubectl stash` runs the command in a short-lived Job
that mounts the volume (run here by the pod runner), and deletes the Job afterwards."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from stash.contract.resources import REPOSITORIES
from stash.kube.client import JSON, Kube
from stash.kube.resources import JOBS, PODS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.conftest import MakeRestic, storage_of
from tests.integration.kubectl.conftest import Kubectl
from tests.integration.kubectl.test_repository_commands import _wait_for_locks
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


async def _run_the_jobs_pod(kube: Kube, ns: str, runner: PodRunner) -> str:
    """Run the plugin's Job pod as a kubelet would; its output."""

    async def pod() -> JSON | None:
        items = (
            await kube.list(PODS, ns, label_selector="app.kubernetes.io/component=kubectl-stash")
        )["items"]
        return items[0] if items and items[0]["spec"].get("nodeName") else None

    found = await eventually(pod, timeout=60, what="the Job's pod scheduled")
    [handle] = await runner.run_pod(found, report_status=True)
    await handle.wait(120)
    return handle.logs()


async def test_local_backend_commands_run_in_a_job_that_is_cleaned_up(
    kubectl: Kubectl,
    rawkube: Kube,
    namespace: str,
    stash_crds: list[str],
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_restic: MakeRestic,
    restic_bin: str,
) -> None:
    storage = storage_of("local", request, tmp_path)
    secret = {"metadata": {"name": "repo-creds"}, "data": {
        k: base64.b64encode(v).decode() for k, v in storage.secret.items()}}  # fmt: skip
    await rawkube.create(SECRETS, secret, namespace)
    repo = {"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
            "metadata": {"name": "repo"},
            "spec": {"backend": storage.backend.to_wire()}}  # fmt: skip
    await rawkube.create(REPOSITORIES, repo, namespace)
    restic = make_restic(storage)
    await restic.init()
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    summary = await restic.backup([str(data)], host="web-0")

    env = {**os.environ, **restic.target.env}
    argv = [restic_bin, *restic.target.options, "--no-cache", "backup"]
    argv += ["--stdin-from-command", "--stdin-filename", "x", "--", "sleep", "120"]
    doomed = await asyncio.create_subprocess_exec(
        *argv, env=env, start_new_session=True, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        [stale] = await _wait_for_locks(restic, 1)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        await doomed.wait()

    path = f"PATH={Path(sys.executable).parent}:{Path(restic_bin).parent}:{DEFAULT_PATH}"
    runner = PodRunner(rawkube, tmp_path / "pods")
    try:
        cli = asyncio.create_task(
            kubectl.stash(namespace, "snapshots", "repo", "-o", "json", f"--job-env={path}")
        )
        out = await _run_the_jobs_pod(rawkube, namespace, runner)
        done = await cli
        assert done.returncode == 0, done.stderr + out
        assert "running in Job" in done.stderr
        [item] = json.loads(out)["items"]  # what the Job printed
        assert item["metadata"]["uid"] == summary.snapshot_id

        cli = asyncio.create_task(
            kubectl.stash(namespace, "unlock", "repo", "--min-age=0s", f"--job-env={path}")
        )
        out = await _run_the_jobs_pod(rawkube, namespace, runner)
        done = await cli
        assert done.returncode == 0, done.stderr + out
        assert f"removed stale lock {stale[:8]}" in out
        assert await restic.lock_ids() == []
    finally:
        await runner.close()

    async def cleaned_up() -> bool:
        return not (await rawkube.list(JOBS, namespace))["items"]

    await eventually(cleaned_up, what="the plugin's Jobs deleted")


async def _run_next_pod(kube: Kube, ns: str, runner: PodRunner, seen: set[str]) -> str:
    """Run the plugin's next Job pod (one not in `seen`) as a kubelet would; its output."""

    async def pod() -> JSON | None:
        selector = "app.kubernetes.io/component=kubectl-stash"
        items = (await kube.list(PODS, ns, label_selector=selector))["items"]
        fresh = [p for p in items if p["metadata"]["name"] not in seen]
        return fresh[0] if fresh and fresh[0]["spec"].get("nodeName") else None

    found = await eventually(pod, timeout=60, what="the Job's pod scheduled")
    seen.add(found["metadata"]["name"])
    [handle] = await runner.run_pod(found, report_status=True)
    await handle.wait(120)
    return handle.logs()


async def test_key_add_and_update_on_a_local_backend_run_in_jobs(
    kubectl: Kubectl,
    rawkube: Kube,
    namespace: str,
    stash_crds: list[str],
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_restic: MakeRestic,
    restic_bin: str,
) -> None:
    storage = storage_of("local", request, tmp_path)
    secret = {"metadata": {"name": "repo-creds"}, "data": {
        k: base64.b64encode(v).decode() for k, v in storage.secret.items()}}  # fmt: skip
    await rawkube.create(SECRETS, secret, namespace)
    repo = {"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
            "metadata": {"name": "repo"},
            "spec": {"backend": storage.backend.to_wire()}}  # fmt: skip
    await rawkube.create(REPOSITORIES, repo, namespace)
    restic = make_restic(storage)
    await restic.init()
    [first] = await restic.keys()
    second, third = tmp_path / "second", tmp_path / "third"
    second.write_text("a second password\n")
    third.write_text("the third password")
    path = f"PATH={Path(sys.executable).parent}:{Path(restic_bin).parent}:{DEFAULT_PATH}"
    runner = PodRunner(rawkube, tmp_path / "pods")
    seen: set[str] = set()
    try:
        add = ["key", "add", "repo", f"--new-password-file={second}", "--user=ops"]
        cli = asyncio.create_task(kubectl.stash(namespace, *add, f"--job-env={path}"))
        out = await _run_next_pod(rawkube, namespace, runner, seen)
        done = await cli
        assert done.returncode == 0, done.stderr + out
        assert "running in Job" in done.stderr and "added to repo" in out
        other = make_restic(storage, password="a second password")
        assert {k.user_name for k in await other.keys()} >= {"ops"}  # the new key opens it

        update = ["key", "update", "repo", f"--new-password-file={third}"]
        cli = asyncio.create_task(kubectl.stash(namespace, *update, f"--job-env={path}"))
        out = await _run_next_pod(rawkube, namespace, runner, seen)  # adds the new key
        out += await _run_next_pod(rawkube, namespace, runner, seen)  # removes the old one
        done = await cli
        assert done.returncode == 0, done.stderr + out
        assert "removed from repo" in out and "Secret repo-creds updated" in done.stdout
    finally:
        await runner.close()
    live = await rawkube.get(SECRETS, "repo-creds", namespace)
    assert base64.b64decode(live["data"]["RESTIC_PASSWORD"]) == b"the third password"
    keys = await make_restic(storage, password="the third password").keys()
    assert first.id not in {k.id for k in keys} and len(keys) == 2  # the second stays

    async def cleaned_up() -> bool:
        jobs = (await rawkube.list(JOBS, namespace))["items"]
        # the passwords travelled in Secrets made for the Jobs: none is left
        secrets = (await rawkube.list(SECRETS, namespace))["items"]
        return not jobs and [s["metadata"]["name"] for s in secrets] == ["repo-creds"]

    await eventually(cleaned_up, what="the plugin's Jobs and their Secrets deleted")


async def test_download_from_a_local_backend_restores_in_a_job_and_copies_here(
    kubectl: Kubectl,
    rawkube: Kube,
    namespace: str,
    stash_crds: list[str],
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_restic: MakeRestic,
    restic_bin: str,
) -> None:
    storage = storage_of("local", request, tmp_path)
    secret = {"metadata": {"name": "repo-creds"}, "data": {
        k: base64.b64encode(v).decode() for k, v in storage.secret.items()}}  # fmt: skip
    await rawkube.create(SECRETS, secret, namespace)
    repo = {"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
            "metadata": {"name": "repo"},
            "spec": {"backend": storage.backend.to_wire()}}  # fmt: skip
    await rawkube.create(REPOSITORIES, repo, namespace)
    restic = make_restic(storage)
    await restic.init()
    data = tmp_path / "data"
    files = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(300_000), "sub/deep/c": b""}
    for rel, content in files.items():
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(content)
    await restic.backup([str(data)], host="web-0")

    dest = tmp_path / "downloaded"
    path = f"PATH={Path(sys.executable).parent}:{Path(restic_bin).parent}:{DEFAULT_PATH}"
    runner = PodRunner(rawkube, tmp_path / "pods")
    try:
        args = ["download", "repo", f"--destination={dest}", f"--job-env={path}"]
        cli = asyncio.create_task(kubectl.stash(namespace, *args))
        out = await _run_next_pod(rawkube, namespace, runner, set())
        done = await cli
        assert done.returncode == 0, done.stderr + out
        assert "restoring in Job" in done.stderr and "downloaded repo" in done.stdout
    finally:
        await runner.close()
    # restic recreates the snapshot's absolute path below the destination
    copied = dest / data.relative_to("/")
    for rel, content in files.items():
        assert (copied / rel).read_bytes() == content, rel

    async def cleaned_up() -> bool:
        return not (await rawkube.list(JOBS, namespace))["items"]

    await eventually(cleaned_up, what="the plugin's Job deleted")
