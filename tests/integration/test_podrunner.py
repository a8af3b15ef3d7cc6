"""The pod runner against the real control plane: pods run as their specs say.

Each test creates real objects (Pods, Deployments, Jobs, Secrets, RBAC) in the test
apiserver, lets the scheduler bind the pods, and runs their containers with
`stash_dev.podrunner`: env and `$(VAR)` expansion as a kubelet builds them, volumes
at their mountPaths in private mount namespaces, the ServiceAccount token working with
real RBAC, process-group signals, and status reports that complete a Job.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stash.kube.client import Kube, Resource
from stash_dev import ControlPlane
from stash_dev.podrunner import PodRunner, PodRunnerError, RunningContainer
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

PODS = Resource("", "v1", "pods", "Pod")
SECRETS = Resource("", "v1", "secrets", "Secret")
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
JOBS = Resource("batch", "v1", "jobs", "Job")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
TOKEN_REVIEWS = Resource(
    "authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False
)

#: The project's interpreter (its venv): the "image" of containers that run our code.
PYTHON = sys.executable
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture
async def api(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    """The raw JSON client, as the admin (what the runner reads pods' references with)."""
    kube = await Kube.connect(control_plane.kubeconfig)
    yield kube
    await kube.close()


@pytest.fixture
async def runner(api: Kube, tmp_path: Path) -> AsyncIterator[PodRunner]:
    """A pod runner whose volumes and logs live under the test's tmp_path."""
    pods = PodRunner(api, tmp_path / "pods")
    yield pods
    await pods.close()


def _shell(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "debian:12",
        "command": ["/bin/sh", "-c"],
        "args": [textwrap.dedent(script)],
        **extra,
    }


async def _create_pod(api: Kube, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"metadata": {"name": name, "labels": {"app": name}}, "spec": spec}
    await api.create(PODS, body, namespace)
    return await _scheduled(api, namespace, name)


async def _scheduled(api: Kube, namespace: str, name: str) -> dict[str, Any]:
    async def bound() -> dict[str, Any] | None:
        pod = await api.get(PODS, name, namespace)
        return pod if pod["spec"].get("nodeName") else None

    return await eventually(bound, timeout=30, what=f"pod {namespace}/{name} to be scheduled")


def _on_host(path: str) -> bool:
    return os.path.lexists(path)


def _host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


async def test_container_gets_env_secret_and_private_mount(
    api: Kube, runner: PodRunner, namespace: str, tmp_path: Path
) -> None:
    assert not _on_host("/var/lib/db"), "precondition: the host has no /var/lib/db"
    await api.create(
        SECRETS, {"metadata": {"name": "db"}, "stringData": {"pw": "s3cr3t!"}}, namespace
    )
    script = """
        echo "name=$POD_NAME ns=$POD_NAMESPACE node=$NODE ip=$POD_IP tier=$TIER sa=$SA_NAME"
        echo "arg=$1"
        echo "greeting=$GREETING"
        echo "hostname=$(hostname) HOSTNAME=$HOSTNAME"
        echo "api=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"
        printf %s "$DB_PASSWORD" > /var/lib/db/password
        echo written > /var/lib/db/marker
        grep -q ' /var/lib/db ' /proc/self/mountinfo && echo "mounted=yes"
    """
    container = _shell(
        "app",
        script,
        env=[
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "SA_NAME",
                "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}},
            },
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "GREETING", "value": "hello $(POD_NAME), $$(POD_NAME) and $(UNDEFINED)"},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
        ],
        volumeMounts=[{"name": "data", "mountPath": "/var/lib/db"}],
    )
    container["args"].append("$(POD_NAMESPACE)")  # $0 of the script
    container["args"].append("$(NODE)/x")  # $1
    body = {
        "metadata": {"name": "env", "labels": {"tier": "backend"}},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "default",
            "containers": [container],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }
    await api.create(PODS, body, namespace)
    pod = await _scheduled(api, namespace, "env")
    data = tmp_path / "db"
    data.mkdir()

    handle = await runner.run(pod, "app", volumes={"data": data})
    assert await handle.wait(timeout=60) == 0, handle.logs()

    out = handle.logs()
    node = pod["spec"]["nodeName"]
    ip = (await api.get(PODS, "env", namespace))["status"]["podIP"]  # the kubelet's
    assert f"name=env ns={namespace} node={node} ip={ip} tier=backend sa=default" in out
    assert f"arg={node}/x" in out
    assert "greeting=hello env, $(POD_NAME) and $(UNDEFINED)" in out
    assert "hostname=env HOSTNAME=env" in out
    assert f"api=127.0.0.1:{runner.service_port}" in out
    assert "mounted=yes" in out
    assert (data / "marker").read_text() == "written\n"
    assert (data / "password").read_text() == "s3cr3t!"
    assert "s3cr3t!" not in out
    assert not _on_host("/var/lib/db"), "the mount point leaked onto the host"
    assert str(data) not in _host_mounts(), "a bind mount outlived the container"


async def test_replicas_each_have_their_own_mount_path(
    api: Kube, runner: PodRunner, namespace: str, tmp_path: Path
) -> None:
    template = {
        "metadata": {"labels": {"app": "db"}},
        "spec": {
            "containers": [
                _shell(
                    "db",
                    'echo "$(POD_NAME)" > /var/lib/db/owner; sleep 0.5; cat /var/lib/db/owner',
                    env=[
                        {
                            "name": "POD_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        }
                    ],
                    volumeMounts=[{"name": "data", "mountPath": "/var/lib/db"}],
                )
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }
    deployment = {
        "metadata": {"name": "db"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}, "template": template},
    }
    await api.create(DEPLOYMENTS, deployment, namespace)

    async def two_scheduled() -> list[dict[str, Any]] | None:
        pods = (await api.list(PODS, namespace, label_selector="app=db"))["items"]
        ready = [p for p in pods if p["spec"].get("nodeName")]
        return ready if len(ready) == 2 else None

    pods = await eventually(two_scheduled, timeout=60, what="two scheduled replicas")
    dirs = {p["metadata"]["name"]: tmp_path / p["metadata"]["name"] for p in pods}
    for d in dirs.values():
        d.mkdir()
    handles = [
        await runner.run(p, "db", volumes={"data": dirs[p["metadata"]["name"]]}) for p in pods
    ]
    codes = await asyncio.gather(*(h.wait(timeout=60) for h in handles))
    assert codes == [0, 0], [h.logs() for h in handles]
    for name, d in dirs.items():
        assert (d / "owner").read_text() == f"{name}\n"
    for h, p in zip(handles, pods, strict=True):
        assert h.logs().strip() == p["metadata"]["name"]
    assert not _on_host("/var/lib/db")


_API_CALL = """
import json, os, ssl, sys, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
ns = open(sa + "/namespace").read()
token = open(sa + "/token").read()
ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
req = urllib.request.Request(
    f"https://{host}:{port}/api/v1/namespaces/{ns}/configmaps",
    headers={"Authorization": "Bearer " + token},
)
try:
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        names = [i["metadata"]["name"] for i in json.load(r)["items"]]
        print("status", r.status, sorted(names))
except urllib.error.HTTPError as err:
    print("status", err.code)
"""


async def test_service_account_token_carries_the_pods_rbac(
    api: Kube, runner: PodRunner, namespace: str
) -> None:
    await api.create(SERVICE_ACCOUNTS, {"metadata": {"name": "reader"}}, namespace)
    await api.create(CONFIG_MAPS, {"metadata": {"name": "settings"}, "data": {"a": "1"}}, namespace)
    spec = {
        "serviceAccountName": "reader",
        "restartPolicy": "Never",
        "containers": [{"name": "client", "image": "python", "command": [PYTHON, "-c", _API_CALL]}],
    }
    pod = await _create_pod(api, namespace, "client", spec)

    denied = await runner.run(pod, "client")
    assert await denied.wait(timeout=60) == 0, denied.logs()
    assert "status 403" in denied.logs()

    role = {
        "metadata": {"name": "read-configmaps"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
    }
    await api.create(ROLES, role, namespace)
    binding = {
        "metadata": {"name": "reader"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        },
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    }
    await api.create(ROLE_BINDINGS, binding, namespace)

    async def allowed() -> str | None:
        handle = await runner.run(pod, "client")
        await handle.wait(timeout=60)
        out = handle.logs().splitlines()[-1]
        return out if "status 200" in out else None

    out = await eventually(allowed, timeout=30, interval=0.5, what="the RoleBinding to apply")
    assert "settings" in out

    # The token is the pod's: bound to it, for its ServiceAccount.
    token_file = next((runner.pod_dir(pod) / "volumes").glob("kube-api-access-*/token"))
    review = await api.create(
        TOKEN_REVIEWS,
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token_file.read_text()},
        },
    )
    user = review["status"]["user"]
    assert review["status"]["authenticated"] is True
    assert user["username"] == f"system:serviceaccount:{namespace}:reader"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["client"]
    assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [pod["metadata"]["uid"]]


async def test_in_cluster_config_of_the_client_library_works(
    api: Kube, runner: PodRunner, namespace: str
) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from stash.kube.client import Forbidden, Kube, Resource

        async def main():
            kube = await Kube.connect()  # no kubeconfig: in-cluster settings
            try:
                await kube.list(Resource("", "v1", "secrets", "Secret"), "kube-system")
            except Forbidden:
                print("in-cluster config works; secrets forbidden")
            await kube.close()

        asyncio.run(main())
        """
    )
    spec = {"containers": [{"name": "agent", "image": "stash", "args": ["-c", script]}]}
    pod = await _create_pod(api, namespace, "agent", spec)
    with pytest.raises(PodRunnerError, match="no command and image 'stash'"):
        await runner.run(pod, "agent")
    runner.entrypoints["stash"] = [PYTHON]
    handle = await runner.run(pod, "agent")
    assert await handle.wait(timeout=60) == 0, handle.logs()
    assert "in-cluster config works; secrets forbidden" in handle.logs()


async def test_automount_false_leaves_no_token(
    api: Kube, runner: PodRunner, namespace: str
) -> None:
    spec = {
        "automountServiceAccountToken": False,
        "containers": [_shell("c", f"test -e {SA_DIR} && echo token || echo no-token")],
    }
    pod = await _create_pod(api, namespace, "notoken", spec)
    handle = await runner.run(pod, "c")
    assert await handle.wait(timeout=60) == 0
    assert handle.logs().strip() == "no-token"


async def test_volume_kinds_subpaths_and_read_only(
    api: Kube, runner: PodRunner, namespace: str, tmp_path: Path
) -> None:
    await api.create(
        CONFIG_MAPS, {"metadata": {"name": "conf"}, "data": {"app.yaml": "x: 1\n"}}, namespace
    )
    await api.create(
        SECRETS, {"metadata": {"name": "creds"}, "stringData": {"user": "u", "key": "k"}}, namespace
    )
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "seed").write_text("seed\n")
    script = """
        cat /etc/app/app.yaml
        ls /creds; cat /creds/nested/user; echo
        cat /podinfo/labels; echo
        echo sub > /scratch/file && echo "scratch ok"
        cat /ro/seed
        touch /ro/new 2>/dev/null && echo "ro writable" || echo "ro refused"
        touch /etc/app/new 2>/dev/null && echo "configmap writable" || echo "configmap refused"
        echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"
        pwd
    """
    container = _shell(
        "c",
        script,
        workingDir="/work/here",
        securityContext={"runAsUser": 1000, "runAsGroup": 1000},
        volumeMounts=[
            {"name": "conf", "mountPath": "/etc/app"},
            {"name": "creds", "mountPath": "/creds"},
            {"name": "info", "mountPath": "/podinfo"},
            {"name": "scratch", "mountPath": "/scratch", "subPath": "one/two"},
            {"name": "shared", "mountPath": "/ro", "readOnly": True},
        ],
    )
    spec = {
        "securityContext": {"fsGroup": 2000},
        "containers": [container],
        "volumes": [
            {"name": "conf", "configMap": {"name": "conf"}},
            {
                "name": "creds",
                "secret": {
                    "secretName": "creds",
                    "items": [{"key": "user", "path": "nested/user"}],
                },
            },
            {
                "name": "info",
                "downwardAPI": {
                    "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                },
            },
            {"name": "scratch", "emptyDir": {}},
            {"name": "shared", "nfs": {"server": "nfs.invalid", "path": "/export"}},
        ],
    }
    body = {"metadata": {"name": "vols", "labels": {"app": "vols"}}, "spec": spec}
    await api.create(PODS, body, namespace)
    pod = await _scheduled(api, namespace, "vols")
    with pytest.raises(PodRunnerError, match=r"volume 'shared'.*pass volumes="):
        await runner.run(pod, "c")

    handle = await runner.run(pod, "c", volumes={"shared": shared})
    assert await handle.wait(timeout=60) == 0, handle.logs()
    lines = handle.logs().splitlines()
    assert lines[:4] == ["x: 1", "nested", "u", 'app="vols"'], lines
    assert "scratch ok" in lines
    assert "seed" in lines
    assert "ro refused" in lines
    assert "configmap refused" in lines
    assert "uid=1000 gid=1000 groups=1000 2000" in lines
    assert lines[-1] == "/work/here"
    scratch = runner.pod_dir(pod) / "volumes" / "scratch"
    assert (scratch / "one" / "two" / "file").read_text() == "sub\n"
    assert not (shared / "new").exists()
    for path in ("/scratch", "/podinfo", "/creds", "/ro", "/work/here"):
        assert not _on_host(path), f"{path} leaked onto the host"


async def test_init_containers_run_in_order_and_share_empty_dirs(
    api: Kube, runner: PodRunner, namespace: str
) -> None:
    mount = [{"name": "work", "mountPath": "/stash-data"}]
    spec = {
        "initContainers": [
            _shell("first", "echo one > /stash-data/steps", volumeMounts=mount),
            _shell("second", "echo two >> /stash-data/steps", volumeMounts=mount),
        ],
        "containers": [_shell("main", "cat /stash-data/steps", volumeMounts=mount)],
        "volumes": [{"name": "work", "emptyDir": {}}],
    }
    pod = await _create_pod(api, namespace, "inits", spec)
    handles = await runner.run_pod(pod)
    assert [h.container for h in handles] == ["main"]
    assert await handles[0].wait(timeout=60) == 0
    assert handles[0].logs().split() == ["one", "two"]

    failing = {
        "initContainers": [_shell("fails", "echo boom; exit 3")],
        "containers": [_shell("never", "echo should-not-run")],
    }
    bad = await _create_pod(api, namespace, "bad-init", failing)
    with pytest.raises(PodRunnerError, match="init container 'fails' exited 3"):
        await runner.run_pod(bad)
    assert not (runner.pod_dir(bad) / "never.log").exists()


async def test_kill_ends_the_whole_process_group(
    api: Kube, runner: PodRunner, namespace: str
) -> None:
    spec = {"containers": [_shell("sleeper", "sleep 300 & sleep 300 & wait")]}
    pod = await _create_pod(api, namespace, "sleeper", spec)
    handle = await runner.run(pod, "sleeper")

    async def three() -> list[int] | None:
        members = _group_members(handle.pid)
        return members if len(members) >= 3 else None

    await eventually(three, timeout=10, what="the shell and its two sleeps")
    handle.kill()
    assert await handle.wait(timeout=10) == 137
    assert handle.exit_code == 137

    async def gone() -> bool:
        return not _group_members(handle.pid)

    await eventually(gone, timeout=10, what="every process of the group to end")


async def test_what_the_main_process_leaves_behind_is_killed(
    api: Kube, runner: PodRunner, namespace: str
) -> None:
    spec = {"containers": [_shell("forks", "sleep 300 & echo started")]}
    pod = await _create_pod(api, namespace, "forks", spec)
    handle = await runner.run(pod, "forks")
    assert await handle.wait(timeout=10) == 0
    assert handle.logs().strip() == "started"

    async def gone() -> bool:
        return not _group_members(handle.pid)

    await eventually(gone, timeout=10, what="the background sleep to be killed")


async def test_start_errors_are_clear_and_reported(
    api: Kube, runner: PodRunner, namespace: str
) -> None:
    spec = {
        "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "x", "command": ["/no/such/binary"]}],
    }
    pod = await _create_pod(api, namespace, "nobinary", spec)
    with pytest.raises(PodRunnerError, match='exec "/no/such/binary": executable file not found'):
        await runner.run(pod, "c", report_status=True)

    async def failed() -> dict[str, Any] | None:
        current = await api.get(PODS, "nobinary", namespace)
        return current if current["status"].get("phase") == "Failed" else None

    current = await eventually(failed, timeout=15, what="the pod to be Failed")
    term = current["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (128, "StartError")


async def test_reported_status_completes_a_job(
    api: Kube, runner: PodRunner, namespace: str
) -> None:
    job = {
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [_shell("work", "echo working; sleep 0.5; echo done")],
                }
            },
        },
    }
    await api.create(JOBS, job, namespace)

    async def job_pod() -> dict[str, Any] | None:
        pods = (await api.list(PODS, namespace, label_selector="job-name=once"))["items"]
        return pods[0] if pods and pods[0]["spec"].get("nodeName") else None

    pod = await eventually(job_pod, timeout=30, what="the Job's pod to be scheduled")
    handle: RunningContainer = await runner.run(pod, "work", report_status=True)

    async def running() -> bool:
        current = await api.get(PODS, pod["metadata"]["name"], namespace)
        states = [s["state"] for s in current["status"].get("containerStatuses") or []]
        return bool(states) and ("running" in states[0] or "terminated" in states[0])

    await eventually(running, timeout=15, what="the container to be reported")
    assert await handle.wait(timeout=60) == 0

    current = await api.get(PODS, pod["metadata"]["name"], namespace)
    assert current["status"]["phase"] == "Succeeded"

    async def complete() -> bool:
        status = (await api.get(JOBS, "once", namespace)).get("status") or {}
        conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
        return conds.get("Complete") == "True" and status.get("succeeded") == 1

    await eventually(complete, timeout=60, what="the Job to complete")


async def test_runner_refuses_unscheduled_and_unknown_containers(
    api: Kube, runner: PodRunner, namespace: str
) -> None:
    body = {
        "metadata": {"name": "nowhere"},
        "spec": {
            "nodeSelector": {"no-such-label": "x"},
            "containers": [_shell("c", "true")],
        },
    }
    pod = await api.create(PODS, body, namespace)
    with pytest.raises(PodRunnerError, match="not scheduled"):
        await runner.run(pod, "c")
    ok = await _create_pod(api, namespace, "ok", {"containers": [_shell("c", "true")]})
    with pytest.raises(PodRunnerError, match="no container or init container 'nope'"):
        await runner.run(ok, "nope")


async def test_a_non_root_container_runs_an_executable_kept_under_root_only_directories(
    api: Kube, runner: PodRunner, namespace: str, tmp_path: Path
) -> None:
    # pytest's tmp_path sits under 0700 directories, like a pyenv Python under /root.
    image = tmp_path / "image"
    (image / "bin").mkdir(parents=True)
    image.chmod(0o700)
    private = image / "private.key"
    private.write_text("not for uid 65532\n")
    private.chmod(0o600)
    tool = image / "bin" / "tool"
    tool.write_text(f"#!/bin/sh\necho uid=$(id -u)\ncat {private} || echo refused\n")
    tool.chmod(0o755)
    container = {
        "name": "c",
        "image": "tool:1",
        "command": [str(tool)],
        "securityContext": {"runAsUser": 65532, "runAsGroup": 65532},
    }
    pod = await _create_pod(api, namespace, "nonroot", {"containers": [container]})
    handle = await runner.run(pod, "c")
    assert await handle.wait(timeout=60) == 0, handle.logs()
    out = handle.logs()
    assert "uid=65532" in out
    assert "not for uid 65532" not in out and "refused" in out  # files keep their modes
    assert image.stat().st_mode & 0o777 == 0o700  # the host is unchanged
