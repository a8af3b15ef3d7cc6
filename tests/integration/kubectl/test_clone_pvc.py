"""`kubectl stash clone pvc`: a PVC's files in a new PVC, through a real backup Job and a
real restore Job (run by the pod runner) on a REST repository; the temporaries are gone."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import PODS, PVCS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.e2e.jobs import claim_dir
from tests.integration.agent.conftest import agent_env, read_tree, write_tree
from tests.integration.conftest import storage_of
from tests.integration.kubectl.conftest import Kubectl
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

FILES = {"a.txt": b"alpha\n", "deep/b.bin": bytes(range(256)) * 8}


@pytest.fixture
async def runner(rawkube: Kube, tmp_path: Path) -> AsyncIterator[PodRunner]:
    pods = PodRunner(rawkube, tmp_path / "pods")
    yield pods
    await pods.close()


async def _run_job_named(kube: Kube, runner: PodRunner, ns: str, prefix: str) -> None:
    """Run the pod of the Job named `prefix...` to its end (exit 0). The plugin may delete
    the Job as soon as the session it serves is over, so its completion is not awaited."""

    async def pod() -> JSON | None:
        for p in (await kube.list(PODS, ns))["items"]:
            job = p["metadata"].get("labels", {}).get("job-name", "")
            if job.startswith(prefix) and p["spec"].get("nodeName"):
                return dict(p)
        return None

    found = await eventually(pod, timeout=90, what=f"the pod of a Job {prefix}*")
    for container in await runner.run_pod(found, report_status=True):
        code = await container.wait(timeout=180)
        assert code == 0, f"{container.container} exited {code}:\n{container.logs()[-3000:]}"


async def test_clone_pvc_copies_the_files_and_cleans_up(
    kubectl: Kubectl,
    rawkube: Kube,
    run_operator: OperatorFactory,
    runner: PodRunner,
    namespace: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    restic_bin: str,
) -> None:
    await run_operator()
    storage = storage_of("rest", request, tmp_path)
    secret = {"metadata": {"name": "repo-creds"}, "data": {
        k: base64.b64encode(v).decode() for k, v in storage.secret.items()}}  # fmt: skip
    await rawkube.create(SECRETS, secret, namespace)
    repo = {"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
            "metadata": {"name": "repo"},
            "spec": {"backend": storage.backend.to_wire()}}  # fmt: skip
    await rawkube.create(REPOSITORIES, repo, namespace)
    claim = {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
             "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip
    await rawkube.create(PVCS, claim, namespace)
    write_tree(await claim_dir(rawkube, namespace, "data"), FILES)
    # No images here: the Jobs' env puts the venv and restic on PATH (the image's ENV).
    settings = tmp_path / "runtime.yaml"
    settings.write_text(yaml.safe_dump({
        "container": {"env": agent_env(restic_bin)},
        "pod": {"securityContext": {"runAsUser": 0}},
    }))  # fmt: skip

    dry = await kubectl.stash(namespace, "clone", "pvc", "data", "--repository=repo", "--dry-run")
    assert dry.returncode == 0 and "(dry run)" in dry.stdout, dry.stderr
    cli = asyncio.create_task(
        kubectl.stash(
            namespace, "clone", "pvc", "data", "--repository=repo",
            f"--runtime-settings={settings}", "--timeout=240", timeout=400,
        )
    )  # fmt: skip
    await _run_job_named(rawkube, runner, namespace, "stash-backup-clone-data-")
    await _run_job_named(rawkube, runner, namespace, "stash-restore-clone-data-clone-")
    done = await cli
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"PVC {namespace}/data cloned to {namespace}/data-clone"
    assert read_tree(await claim_dir(rawkube, namespace, "data-clone")) == FILES

    async def cleaned() -> bool:
        left: list[JSON] = []
        for res in (BACKUPCONFIGURATIONS, RESTORESESSIONS):
            left += (await rawkube.list(res, namespace))["items"]
        return not left

    await eventually(cleaned, timeout=60, what="the temporary invokers deleted")
    # the new claim is not garbage-collected with the RestoreSession that made it
    await asyncio.sleep(3)
    assert read_tree(await claim_dir(rawkube, namespace, "data-clone")) == FILES
    claim = await rawkube.get(PVCS, "data-clone", namespace)
    assert not claim["metadata"].get("ownerReferences")
