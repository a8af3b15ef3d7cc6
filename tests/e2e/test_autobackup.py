"""Auto-backup end to end (stash-api.md §3, scenario S1, issue #14 acceptance): a
BackupBlueprint and annotated objects — real control plane, real restic, S3 on
moto_server, injected sidecars and Job pods run by the pod runner.

* S1: an annotated Deployment -> Repository and BackupConfiguration `deployment-web`,
  the sidecar, a triggered session Succeeded, the snapshot at the blueprint's expanded
  prefix, a RestoreSession restoring it byte for byte; removing the annotation removes
  the BackupConfiguration and the sidecar and keeps the Repository and its snapshots.
* A StatefulSet: every replica backs up as its own host.
* A stand-alone PVC: a Job from the `pvc-backup` Task backs it up.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stash.cli.kubectl.invokers import backup_invoker_named
from stash.contract.resources import (
    BACKUPBLUEPRINTS,
    BACKUPCONFIGURATIONS,
    REPOSITORIES,
    RESTORESESSIONS,
)
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, NotFound
from stash.kube.resources import DEPLOYMENTS, JOBS, PVCS, SECRETS, STATEFULSETS
from stash_dev.podrunner import PodRunner
from tests.e2e.jobs import claim_dir, exists, run_job
from tests.integration.agent.conftest import (
    PASSWORD,
    agent_env,
    deployment,
    finished,
    host_restic,
    host_stats,
    injected_pods,
    read_tree,
    statefulset,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually
from tests.support.storage import S3_KEY_ID, S3_SECRET, MotoServer

pytestmark = pytest.mark.cluster
ANN = "stash.appscode.com/"


@pytest.fixture
async def s3(rawkube: Kube, moto: MotoServer, namespace: str) -> AsyncIterator[str]:
    """A bucket and the storage Secret `s3-secret` in the test's namespace."""
    bucket = f"ab-{namespace[-6:]}"
    moto.create_bucket(bucket)
    keys = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    await rawkube.create(
        SECRETS,
        {"metadata": {"name": "s3-secret"}, "stringData": {"RESTIC_PASSWORD": PASSWORD, **keys}},
        namespace,
    )
    yield bucket


@pytest.fixture
async def blueprint(
    rawkube: Kube, moto: MotoServer, s3: str, restic_bin: str, namespace: str
) -> AsyncIterator[str]:
    """S1's blueprint (its prefix expanded per target) on the test bucket; removed after."""
    name = f"wl-bp-{namespace[-6:]}"
    body = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBlueprint",
        "metadata": {"name": name},
        "spec": {
            "backend": {
                "s3": {
                    "endpoint": moto.endpoint,
                    "bucket": s3,
                    "prefix": "stash/${TARGET_NAMESPACE}/${TARGET_KIND}/${TARGET_NAME}",
                },
                "storageSecretName": "s3-secret",
            },
            "schedule": "*/5 * * * *",
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            # No images here: the env puts the venv's `stash` and the test restic on PATH
            # (what the image's ENV does); Job pods run as root to read this host's venv.
            "runtimeSettings": {
                "container": {"env": agent_env(restic_bin)},
                "pod": {"securityContext": {"runAsUser": 0}},
            },
        },
    }
    await rawkube.create(BACKUPBLUEPRINTS, body)
    yield name
    with contextlib.suppress(NotFound):
        await rawkube.delete(BACKUPBLUEPRINTS, name)


def annotations(bp: str, **extra: str) -> dict[str, str]:
    return {
        f"{ANN}backup-blueprint": bp,
        f"{ANN}target-paths": "/data",
        f"{ANN}volume-mounts": "data:/data",
        **{f"{ANN}{k}": v for k, v in extra.items()},
    }


async def ready(kube: Kube, ns: str, name: str) -> JSON:
    async def probe() -> JSON | None:
        try:
            bc = await kube.get(BACKUPCONFIGURATIONS, name, ns)
        except NotFound:
            return None
        return bc if (bc.get("status") or {}).get("phase") == "Ready" else None

    return await eventually(probe, timeout=60, what=f"BackupConfiguration {name} Ready")


async def trigger(kube: Kube, ns: str, name: str) -> str:
    """What `kubectl stash trigger <name>` does."""
    invoker = await backup_invoker_named(kube, name, ns)
    return await create_backup_session(kube, invoker, dt.datetime.now(dt.UTC))


def s3_restic(moto: MotoServer, bucket: str, prefix: str, restic_bin: str, scratch: Path) -> Any:
    backend = {"s3": {"endpoint": moto.endpoint, "bucket": bucket, "prefix": prefix}}
    return host_restic(
        backend,
        restic_bin,
        scratch,
        AWS_ACCESS_KEY_ID=S3_KEY_ID,
        AWS_SECRET_ACCESS_KEY=S3_SECRET,
    )


async def test_s1_annotated_deployment_backs_up_and_restores(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    moto: MotoServer,
    s3: str,
    blueprint: str,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    deploy = deployment()
    deploy["metadata"]["annotations"] = annotations(blueprint, schedule="*/15 * * * *")
    await rawkube.create(DEPLOYMENTS, deploy, namespace)
    bc = await ready(rawkube, namespace, "deployment-web")
    assert bc["spec"]["schedule"] == "*/15 * * * *"
    repo = await rawkube.get(REPOSITORIES, "deployment-web", namespace)
    prefix = f"stash/{namespace}/deployment/web"
    assert repo["spec"]["backend"]["s3"]["prefix"] == prefix

    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    sidecar_args = next(c for c in pod["spec"]["containers"] if c["name"] == "stash")["args"]
    assert sidecar_args[:3] == [
        "run-backup",
        "--invoker-name=deployment-web",
        "--invoker-kind=BackupConfiguration",
    ]
    data = tmp_path / "data"
    original = {"db/table.bin": os.urandom(120_000), "conf/app.yaml": b"mode: prod\n"}
    write_tree(data, original)
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    session = await finished(
        rawkube, namespace, await trigger(rawkube, namespace, "deployment-web"), logs=[sidecar]
    )
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert list(host_stats(session)) == ["host-0"]
    restic = s3_restic(moto, s3, prefix, restic_bin, tmp_path / "scratch")
    (snapshot,) = await restic.snapshots()
    assert snapshot.hostname == "host-0" and list(snapshot.paths) == ["/data"]

    # Restore into an empty volume of the same Deployment, byte for byte.
    await rawkube.create(
        RESTORESESSIONS,
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "restore"},
            "spec": {
                "repository": {"name": "deployment-web"},
                "target": {
                    "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "rules": [{"paths": ["/data"]}],
                },
                "runtimeSettings": {"container": {"env": agent_env(restic_bin)}},
            },
        },
        namespace,
    )
    await sidecar.stop(grace=5)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash-init")
    empty = tmp_path / "restored"
    empty.mkdir()
    init = await runner.run(pod, "stash-init", volumes={"data": empty})
    assert await init.wait(120) == 0, init.logs()
    assert read_tree(empty) == original
    await rawkube.delete(RESTORESESSIONS, "restore", namespace)

    # The annotation goes: the BackupConfiguration and the sidecar go; the Repository
    # and its snapshots stay.
    await rawkube.patch(
        DEPLOYMENTS,
        "web",
        {"metadata": {"annotations": {f"{ANN}backup-blueprint": None}}},
        namespace,
    )

    async def removed() -> bool:
        if await exists(rawkube, BACKUPCONFIGURATIONS, "deployment-web", namespace):
            return False
        live = await rawkube.get(DEPLOYMENTS, "web", namespace)
        names = [c["name"] for c in live["spec"]["template"]["spec"]["containers"]]
        return "stash" not in names

    await eventually(removed, timeout=60, what="the BackupConfiguration and sidecar removed")
    assert await exists(rawkube, REPOSITORIES, "deployment-web", namespace)
    assert [s.id for s in await restic.snapshots()] == [snapshot.id]


async def test_statefulset_replicas_back_up_as_their_own_hosts(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    moto: MotoServer,
    s3: str,
    blueprint: str,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    sts = statefulset("db", replicas=2)
    sts["metadata"]["annotations"] = annotations(blueprint)
    await rawkube.create(STATEFULSETS, sts, namespace)
    await ready(rawkube, namespace, "statefulset-db")
    pods = await injected_pods(rawkube, namespace, "db", "stash", count=2)
    sidecars = []
    contents = {}
    for pod in pods:
        ordinal = pod["metadata"]["name"].rsplit("-", 1)[1]
        contents[f"host-{ordinal}"] = os.urandom(10_000)
        data = tmp_path / f"data-{ordinal}"
        write_tree(data, {"table.db": contents[f"host-{ordinal}"]})
        sidecars.append(await runner.run(pod, "stash", volumes={"data": data}))
    name = await trigger(rawkube, namespace, "statefulset-db")
    session = await finished(rawkube, namespace, name, timeout=180, logs=sidecars)
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert sorted(host_stats(session)) == ["host-0", "host-1"]
    restic = s3_restic(moto, s3, f"stash/{namespace}/statefulset/db", restic_bin, tmp_path / "s")
    assert sorted(s.hostname for s in await restic.snapshots()) == ["host-0", "host-1"]
    restored = tmp_path / "restored"
    for host, content in contents.items():
        await restic.restore(str(restored / host), "latest", host=host, paths=["/data"])
        assert (restored / host / "data" / "table.db").read_bytes() == content


async def test_standalone_pvc_is_backed_up_by_a_job(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    moto: MotoServer,
    s3: str,
    blueprint: str,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    await rawkube.patch(BACKUPBLUEPRINTS, blueprint, {"spec": {"task": {"name": "pvc-backup"}}})
    claim = {
        "metadata": {
            "name": "data",
            "annotations": {
                f"{ANN}backup-blueprint": blueprint,
                f"{ANN}target-paths": "/source/data",
                f"{ANN}volume-mounts": "data:/source/data",
            },
        },
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await rawkube.create(PVCS, claim, namespace)
    source = await claim_dir(rawkube, namespace, "data")
    files = {"a.txt": b"alpha\n", "dir/b.bin": os.urandom(30_000)}
    write_tree(source, files)
    bc = await ready(rawkube, namespace, "persistentvolumeclaim-data")
    assert bc["spec"]["task"] == {"name": "pvc-backup"}
    session = await trigger(rawkube, namespace, "persistentvolumeclaim-data")
    job = f"stash-backup-{session}-0"
    await eventually(lambda: exists(rawkube, JOBS, job, namespace), timeout=30, what=f"Job {job}")
    await run_job(rawkube, runner, namespace, job)
    done = await finished(rawkube, namespace, session, timeout=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    prefix = f"stash/{namespace}/persistentvolumeclaim/data"
    restic = s3_restic(moto, s3, prefix, restic_bin, tmp_path / "s")
    (snapshot,) = await restic.snapshots()
    assert snapshot.hostname == "host-0" and list(snapshot.paths) == ["/source/data"]
    restored = tmp_path / "restored"
    await restic.restore(str(restored), "latest", host="host-0", paths=["/source/data"])
    assert read_tree(restored / "source" / "data") == files
