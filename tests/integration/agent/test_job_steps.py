"""The job-model steps as the operator's Job runs them: `backup-pvc` (init container)
then `update-status` (main container) back up a PVC's files and complete the session;
`restore-pvc` restores them into a new volume. The containers' args are rendered by
`stash.agent.steps` with the §5.5 variables substituted, as the operator does."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from aiohttp import web

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.contract.steps import pvc_backup_args, pvc_restore_args, update_status_args
from stash.kube.client import JSON, Kube
from stash.kube.resources import PODS, PVCS, SECRETS
from stash.restic.models import parse_bytes
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    LOCAL_MOUNT,
    agent_env,
    backup_configuration,
    condition,
    create_objects,
    finished,
    grant_repository,
    host_restic,
    host_stats,
    local_repository,
    read_tree,
    ready_invoker,
    repository_status,
    secret,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

VARIABLE = re.compile(r"\$\{([A-Za-z_]+)(?::=([^}]*))?\}")
MOUNT = "/stash-data"


def envsubst(args: list[str], env: dict[str, str]) -> list[str]:
    """`${VAR}` / `${VAR:=default}` substitution, as the operator applies to Functions."""
    return [VARIABLE.sub(lambda m: env.get(m[1], m[2] or ""), a) for a in args]


def pvc() -> JSON:
    return {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def step_pod(
    name: str, steps: list[tuple[str, list[str]]], restic_bin: str, repo_dir: Path
) -> JSON:
    """A pod shaped like the operator's step Job: all steps but the last are init
    containers, the local backend's volume is mounted at its mountPath. The PVC is an
    emptyDir here (this cluster has no storage driver); the runner maps it to a local
    directory either way."""

    def container(cname: str, args: list[str]) -> JSON:
        field_env = [
            {"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}}
            for n, p in (
                ("POD_NAME", "metadata.name"),
                ("POD_NAMESPACE", "metadata.namespace"),
                ("NODE_NAME", "spec.nodeName"),
            )
        ]
        return {
            "name": cname,
            "image": "stash",
            "command": ["stash"],
            "args": args,
            "env": field_env + agent_env(restic_bin),
            "volumeMounts": [
                {"name": "stash-tmp-dir", "mountPath": "/stash-tmp"},
                {"name": "stash-volume", "mountPath": MOUNT},
                {"name": "stash-local", "mountPath": LOCAL_MOUNT},
            ],
        }

    containers = [container(n, a) for n, a in steps]
    return {
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": containers[:-1],
            "containers": containers[-1:],
            "volumes": [
                {"name": "stash-tmp-dir", "emptyDir": {}},
                {"name": "stash-volume", "emptyDir": {}},
                {"name": "stash-local", "hostPath": {"path": str(repo_dir)}},
            ],
        },
    }


async def _scheduled(kube: Kube, ns: str, body: JSON) -> JSON:
    await kube.create(PODS, body, ns)

    async def bound() -> JSON | None:
        pod = await kube.get(PODS, body["metadata"]["name"], ns)
        return pod if pod["spec"].get("nodeName") else None

    return await eventually(bound, timeout=30, what="step pod scheduled")


async def _pvc_world(
    kube: Kube, ns: str, restic_bin: str, repo_dir: Path, hooks: JSON | None = None
) -> None:
    bc = backup_configuration(restic_bin, paths=[MOUNT])
    bc["spec"]["target"] = {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
        "paths": [MOUNT],
    }
    if hooks:
        bc["spec"]["hooks"] = hooks
    await create_objects(
        kube,
        ns,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(repo_dir)),
            (PVCS, pvc()),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(kube, ns)
    await grant_repository(kube, ns, "BackupConfiguration", "bc-steps")  # not the Job's grant


def _session_env(ns: str, session: str, paths: str) -> dict[str, str]:
    return {
        "NAMESPACE": ns,
        "BACKUP_SESSION": session,
        "INVOKER_KIND": "BackupConfiguration",
        "INVOKER_NAME": "bc",
        "TARGET_KIND": "PersistentVolumeClaim",
        "TARGET_NAME": "data",
        "TARGET_NAMESPACE": ns,
        "TARGET_PATHS": paths,
        "HOSTNAME": "host-0",
    }


async def _run_backup_job(
    kube: Kube, ns: str, runner: PodRunner, restic_bin: str, tmp_path: Path, paths: str
) -> tuple[str, list[int], Path]:
    session = await trigger(kube, ns)
    env = _session_env(ns, session, paths)
    pod = await _scheduled(
        kube,
        ns,
        step_pod(
            "stash-backup-job",
            [
                ("pvc-backup-0", envsubst(pvc_backup_args(), env)),
                ("update-status-1", envsubst(update_status_args(), env)),
            ],
            restic_bin,
            tmp_path / "repo",
        ),
    )
    scratch = tmp_path / "stash-tmp"
    scratch.mkdir()
    handles = await runner.run_pod(
        pod, volumes={"stash-volume": tmp_path / "pvc", "stash-tmp-dir": scratch}
    )
    codes = [await h.wait(120) for h in handles]
    return session, codes, scratch


async def test_pvc_backup_then_restore_with_the_step_commands(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    repo_dir = tmp_path / "repo"
    await _pvc_world(rawkube, namespace, restic_bin, repo_dir)
    write_tree(tmp_path / "pvc", {"dump.sql": os.urandom(40_000), "meta/version": b"15\n"})
    original = read_tree(tmp_path / "pvc")

    name, codes, scratch = await _run_backup_job(
        rawkube, namespace, runner, restic_bin, tmp_path, MOUNT
    )
    assert codes == [0]
    output = json.loads((scratch / "output" / "output.json").read_text())
    assert output["target"]["kind"] == "PersistentVolumeClaim"
    assert output["hostBackupStats"]["phase"] == "Succeeded"
    session = await finished(rawkube, namespace, name)
    assert session["status"]["phase"] == "Succeeded", json.dumps(session["status"], indent=1)
    (snap,) = host_stats(session)["host-0"]["snapshots"]
    assert snap["path"] == MOUNT and snap == output["hostBackupStats"]["snapshots"][0]
    # update-status knows the backup step created the repository: the same records as
    # the sidecar's first session, without forget or stats
    retention = condition(session, "RetentionPolicyApplied")
    assert retention["status"] == "True" and "did not run" in retention["message"]
    verified = condition(session, "RepositoryIntegrityVerified")
    assert verified["status"] == "True" and "this session created" in verified["message"]
    repo = await repository_status(rawkube, namespace)
    assert repo["snapshotCount"] == 1 and repo["integrity"] is True
    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")
    stored = (await restic.stats()).total_size
    assert abs(parse_bytes(repo["totalSize"]) - stored) <= stored * 0.01, (repo, stored)

    await rawkube.create(
        RESTORESESSIONS,
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": "restore"},
            "spec": {
                "repository": {"name": "repo"},
                "target": {
                    "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"},
                    "rules": [{"paths": [MOUNT]}],
                },
            },
        },
        namespace,
    )
    await grant_repository(rawkube, namespace, "RestoreSession", "restore-steps")
    env = {
        "NAMESPACE": namespace,
        "RESTORE_SESSION": "restore",
        "INVOKER_KIND": "RestoreSession",
        "INVOKER_NAME": "restore",
        "TARGET_KIND": "PersistentVolumeClaim",
        "TARGET_NAME": "data",
        "TARGET_NAMESPACE": namespace,
        "RESTORE_PATHS": MOUNT,
    }
    pod = await _scheduled(
        rawkube,
        namespace,
        step_pod(
            "stash-restore-job",
            [("pvc-restore-0", envsubst(pvc_restore_args(), env))],
            restic_bin,
            repo_dir,
        ),
    )
    new_volume = tmp_path / "new-pvc"
    new_volume.mkdir()
    (handle,) = await runner.run_pod(pod, volumes={"stash-volume": new_volume})
    assert await handle.wait(120) == 0, handle.logs()
    assert read_tree(new_volume) == original

    async def restored() -> JSON | None:
        obj = await rawkube.get(RESTORESESSIONS, "restore", namespace)
        return obj if (obj.get("status") or {}).get("phase") == "Succeeded" else None

    done = await eventually(restored, timeout=30, what="RestoreSession Succeeded")
    assert [s["hostname"] for s in done["status"]["stats"]] == ["host-0"]


async def test_a_failed_pvc_backup_is_recorded_not_crashed(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    await _pvc_world(rawkube, namespace, restic_bin, tmp_path / "repo")
    write_tree(tmp_path / "pvc", {"a": b"a"})
    name, codes, _ = await _run_backup_job(
        rawkube, namespace, runner, restic_bin, tmp_path, f"{MOUNT}/missing"
    )
    assert codes == [0], "neither step fails the Job for a backup error"
    session = await finished(rawkube, namespace, name)
    assert session["status"]["phase"] == "Failed"
    host = host_stats(session)["host-0"]
    assert "path /stash-data/missing does not exist in the pod" in host["error"]


async def test_the_job_steps_run_the_backup_hooks(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    got: list[tuple[str, str, str]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append((request.method, request.path, await request.text()))
        return web.Response(text="done")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = web.AppRunner(app)
    await server.setup()
    await web.TCPSite(server, "127.0.0.1", 0).start()
    where = {"host": "127.0.0.1", "port": server.addresses[0][1]}
    hooks = {
        "preBackup": {"httpGet": {**where, "path": "/freeze"}},
        "postBackup": {
            "executionPolicy": "OnSuccess",
            "httpPost": {
                **where,
                "path": "/thaw",
                "body": "{{ .Target.Kind }} {{ .Status.Phase }}",
            },
        },
    }
    try:
        await run_operator()
        await _pvc_world(rawkube, namespace, restic_bin, tmp_path / "repo", hooks)
        write_tree(tmp_path / "pvc", {"a": b"a"})
        name, codes, _ = await _run_backup_job(
            rawkube, namespace, runner, restic_bin, tmp_path, MOUNT
        )
        assert codes == [0]
        session = await finished(rawkube, namespace, name)
    finally:
        await server.cleanup()
    assert session["status"]["phase"] == "Succeeded", json.dumps(session["status"], indent=1)
    # preBackup in the backup step, postBackup in update-status, in that order
    assert got == [("GET", "/freeze", ""), ("POST", "/thaw", "PersistentVolumeClaim Succeeded")]
    host = host_stats(session)["host-0"]
    assert [(h["name"], h["phase"]) for h in host["hooks"]] == [
        ("preBackup", "Succeeded"),
        ("postBackup", "Succeeded"),
    ]
