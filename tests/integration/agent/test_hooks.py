"""Hooks around a Deployment's backup and restore, run by the injected sidecar and
`stash-init` against a local HTTP receiver (stash-api.md §6): a preBackup hook answering
500 fails the session before anything is uploaded, an OnFailure postBackup hook posts its
templated body, a tcpSocket hook to a closed port fails as documented, and preRestore /
postRestore run around a restore; a BackupBatch's global hooks run around its member."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stash.contract.resources import (
    BACKUPBATCHES,
    BACKUPCONFIGURATIONS,
    REPOSITORIES,
    RESTORESESSIONS,
)
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, Resource
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    ROLE_BINDINGS,
    backup_configuration,
    create_objects,
    deployment,
    finished,
    host_restic,
    host_stats,
    injected_pods,
    local_repository,
    read_tree,
    ready_invoker,
    secret,
    trigger,
    write_tree,
)
from tests.integration.agent.test_restore import restore_session
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

EVENTS = Resource("", "v1", "events", "Event")


class Receiver:
    """A local HTTP endpoint that records requests and answers `status`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.status = 200
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, await request.text()))
        return web.Response(status=self.status, text=f"receiver says {self.status}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.port = runner.addresses[0][1]
    yield rec
    await runner.cleanup()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def target_condition(session: JSON, kind: str) -> JSON:
    target = (session["status"].get("targets") or [{}])[0]
    for c in target.get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    raise AssertionError(f"no target condition {kind} in {session['status']}")


async def events_of(kube: Kube, ns: str, name: str) -> dict[str, str]:
    items = (await kube.list(EVENTS, ns))["items"]
    return {e["reason"]: e["message"] for e in items if e["involvedObject"]["name"] == name}


async def _start(
    kube: Kube,
    ns: str,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
    hooks: JSON,
    paths: list[str] | None = None,
) -> Any:
    bc = backup_configuration(restic_bin, paths=paths)
    bc["spec"]["hooks"] = hooks
    await create_objects(
        kube,
        ns,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(tmp_path / "repo")),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(kube, ns)
    (pod,) = await injected_pods(kube, ns, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"app/db.bin": os.urandom(20_000)})
    return await runner.run(pod, "stash", volumes={"data": data})


async def test_pre_backup_hook_answering_500_fails_the_host_before_any_upload(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    await run_operator()
    receiver.status = 500
    hooks = {
        "preBackup": {"httpGet": {"host": "127.0.0.1", "port": receiver.port, "path": "/freeze"}}
    }
    sidecar = await _start(rawkube, namespace, runner, restic_bin, tmp_path, hooks)

    name = await trigger(rawkube, namespace)
    session = await finished(rawkube, namespace, name, logs=[sidecar])
    assert session["status"]["phase"] == "Failed"
    assert receiver.requests == [("GET", "/freeze", "")]
    cond = target_condition(session, "PreBackupHookExecutionSucceeded")
    assert cond["status"] == "False"
    assert (
        "preBackup hook (httpGet) failed" in cond["message"] and "answered 500" in cond["message"]
    )
    host = host_stats(session)["host-0"]
    assert host["phase"] == "Failed" and "snapshots" not in host
    assert host["hooks"] == [
        {
            "name": "preBackup",
            "phase": "Failed",
            "message": cond["message"],
            "output": "receiver says 500",
        }
    ]
    events = await events_of(rawkube, namespace, name)
    assert "preBackup hook (httpGet) failed" in events["PreBackupHookExecutionFailed"]
    assert "receiver says 500" in events["PreBackupHookExecutionFailed"]
    restic = host_restic(
        {"local": {"mountPath": str(tmp_path / "repo")}}, restic_bin, tmp_path / "s"
    )
    assert not (tmp_path / "repo" / "config").exists() or await restic.snapshots() == []


async def test_post_backup_on_failure_posts_its_templated_body(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    await run_operator()
    body = (
        '{"text": "Backup {{ .Status.Phase }} for {{ .Namespace }}/{{ .Target.Name }} '
        '({{ .Target.Kind }}): {{ .Status.Error | printf "%.20s" }}"}'
    )
    post = {
        "executionPolicy": "OnFailure",
        "httpPost": {
            "host": "127.0.0.1",
            "port": receiver.port,
            "path": "/notify",
            "httpHeaders": [{"name": "Content-Type", "value": "application/json"}],
            "body": body,
        },
    }
    # a path that is not in the pod fails the backup, so the OnFailure hook runs
    sidecar = await _start(
        rawkube, namespace, runner, restic_bin, tmp_path, {"postBackup": post}, ["/data/missing"]
    )
    name = await trigger(rawkube, namespace)
    session = await finished(rawkube, namespace, name, logs=[sidecar])
    assert session["status"]["phase"] == "Failed"
    ((method, path, got),) = receiver.requests
    assert (method, path) == ("POST", "/notify")
    assert got == (
        f'{{"text": "Backup Failed for {namespace}/web (Deployment): path /data/missing d"}}'
    )
    host = host_stats(session)["host-0"]
    assert host["error"].startswith("path /data/missing does not exist")  # the backup's own
    assert host["hooks"][0]["name"] == "postBackup" and host["hooks"][0]["phase"] == "Succeeded"
    assert target_condition(session, "PostBackupHookExecutionSucceeded")["status"] == "True"


async def test_tcp_socket_hook_to_a_closed_port_fails_the_session(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator()
    port = closed_port()
    sidecar = await _start(
        rawkube,
        namespace,
        runner,
        restic_bin,
        tmp_path,
        {"preBackup": {"tcpSocket": {"port": port}}},
    )
    name = await trigger(rawkube, namespace)
    session = await finished(rawkube, namespace, name, logs=[sidecar])
    assert session["status"]["phase"] == "Failed"
    cond = target_condition(session, "PreBackupHookExecutionSucceeded")
    assert cond["status"] == "False"
    assert (
        f"preBackup hook (tcpSocket) failed: connecting to 127.0.0.1:{port} failed"
        in (cond["message"])
    )
    assert "snapshots" not in host_stats(session)["host-0"]


async def test_pre_and_post_restore_hooks_run_around_the_restore(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    await run_operator()
    sidecar = await _start(rawkube, namespace, runner, restic_bin, tmp_path, {})
    session = await finished(rawkube, namespace, await trigger(rawkube, namespace), logs=[sidecar])
    assert session["status"]["phase"] == "Succeeded", session["status"]
    original = read_tree(tmp_path / "data")
    await sidecar.stop(grace=5)

    rs = restore_session(restic_bin, [{"paths": ["/data"]}])
    where = {"host": "127.0.0.1", "port": receiver.port}
    rs["spec"]["hooks"] = {
        "preRestore": {"httpGet": {**where, "path": "/before"}},
        "postRestore": {
            "executionPolicy": "OnSuccess",
            "httpPost": {**where, "path": "/after", "body": "{{ .Name }} {{ .Status.Phase }}"},
        },
    }
    await rawkube.create(RESTORESESSIONS, rs, namespace)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash-init")
    empty = tmp_path / "new-volume"
    empty.mkdir()
    init = await runner.run(pod, "stash-init", volumes={"data": empty})
    assert await init.wait(120) == 0, init.logs()
    assert read_tree(empty) == original
    assert receiver.requests == [("GET", "/before", ""), ("POST", "/after", "restore Succeeded")]

    async def final() -> JSON | None:
        obj = await rawkube.get(RESTORESESSIONS, "restore", namespace)
        return obj if (obj.get("status") or {}).get("phase") == "Succeeded" else None

    restore = await eventually(final, timeout=60, what="RestoreSession Succeeded")
    (host,) = restore["status"]["stats"]
    assert [(h["name"], h["phase"]) for h in host["hooks"]] == [
        ("preRestore", "Succeeded"),
        ("postRestore", "Succeeded"),
    ]
    conds = {c["type"]: c["status"] for c in restore["status"]["conditions"]}
    assert conds["PreRestoreHookExecutionSucceeded"] == "True"
    assert conds["PostRestoreHookExecutionSucceeded"] == "True"
    events = await events_of(rawkube, namespace, "restore")
    assert "PreRestoreHookExecutionSucceeded" in events
    assert "PostRestoreHookExecutionSucceeded" in events


async def test_a_batchs_global_hooks_run_around_its_members(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    await run_operator()
    where = {"host": "127.0.0.1", "port": receiver.port}
    member = backup_configuration(restic_bin)["spec"]
    batch = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"name": "wp"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "repository": {"name": "repo"},
            "retentionPolicy": member["retentionPolicy"],
            "hooks": {
                "preBackup": {"httpGet": {**where, "path": "/maintenance/on"}},
                "postBackup": {
                    "executionPolicy": "OnSuccess",
                    "httpGet": {**where, "path": "/maintenance/off"},
                },
            },
            "members": [{"target": member["target"], "runtimeSettings": member["runtimeSettings"]}],
        },
    }
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(tmp_path / "repo")),
            (DEPLOYMENTS, deployment()),
            (BACKUPBATCHES, batch),
        ],
    )

    async def ready() -> JSON | None:
        obj = await rawkube.get(BACKUPBATCHES, "wp", namespace)
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    live = await eventually(ready, timeout=60, what="BackupBatch wp Ready")
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"index.html": b"<h1>wp</h1>\n"})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    name = await create_backup_session(
        rawkube, {**live, "kind": "BackupBatch"}, dt.datetime.now(dt.UTC)
    )
    session = await finished(rawkube, namespace, name, logs=[sidecar])
    assert session["status"]["phase"] == "Succeeded", session["status"]
    assert receiver.requests == [("GET", "/maintenance/on", ""), ("GET", "/maintenance/off", "")]
    conds = {c["type"]: c["status"] for c in session["status"]["conditions"]}
    assert conds["GlobalPreBackupHookSucceeded"] == "True"
    assert conds["GlobalPostBackupHookSucceeded"] == "True"


async def test_pre_backup_exec_hook_writes_into_the_volume_and_the_snapshot_has_it(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    """The sidecar runs the hook through the apiserver's pods/exec into the app container
    (the stand-in kubelet enters that container's namespaces), which writes a marker into
    the shared volume before restic reads it."""
    await run_operator()
    hooks = {
        "preBackup": {
            "containerName": "app",
            "exec": {"command": ["sh", "-c", "echo frozen-by-hook > /data/app/.frozen"]},
        }
    }
    dep = deployment()
    dep["spec"]["template"]["spec"]["containers"][0]["command"] = ["sleep", "3600"]
    bc = backup_configuration(restic_bin)
    bc["spec"]["hooks"] = hooks
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(tmp_path / "repo")),
            (DEPLOYMENTS, dep),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(rawkube, namespace)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"app/db.bin": os.urandom(20_000)})
    await runner.run(pod, "app", volumes={"data": data})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})

    session = await finished(rawkube, namespace, await trigger(rawkube, namespace), logs=[sidecar])
    assert session["status"]["phase"] == "Succeeded", (session["status"], sidecar.logs()[-3000:])
    assert target_condition(session, "PreBackupHookExecutionSucceeded")["status"] == "True"
    assert (data / "app" / ".frozen").read_text() == "frozen-by-hook\n"
    restic = host_restic(
        {"local": {"mountPath": str(tmp_path / "repo")}}, restic_bin, tmp_path / "s"
    )
    (snap,) = await restic.snapshots()
    out = tmp_path / "restored"
    await restic.restore(str(out), snap.id)
    assert (out / "data" / "app" / ".frozen").read_text() == "frozen-by-hook\n"
    # the exec role was bound for this invoker's agent only because its hook execs
    bindings = (await rawkube.list(ROLE_BINDINGS, namespace))["items"]
    assert any(b["roleRef"]["name"] == "stash-hook-exec" for b in bindings)
