"""exec through the real apiserver: `kubectl exec` and `stash.kube.podexec` reach a container.

The apiserver authorises `pods/exec` (real RBAC), checks the container against the pod
spec, and proxies the WebSocket to the stand-in kubelet's exec endpoint on the node
address over TLS (`stash_dev.kubelet_exec`), which runs the command inside the container
the pod runner started: its volumes where the spec mounts them, its environment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stash.contract.rbac import POD_EXEC
from stash.kube.client import Kube, Resource
from stash.kube.podexec import PodExec, PodExecError, PodExecTimeout
from stash.pki import KeyPair
from stash_dev import ControlPlane
from stash_dev.pki import issue_client_cert, write_pair
from stash_dev.podrunner import PodRunner
from tests.support.chart_tools import kubectl_binary
from tests.support.cluster import eventually, token_client

pytestmark = pytest.mark.cluster

PODS = Resource("", "v1", "pods", "Pod")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")


@pytest.fixture
async def api(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    """The admin's raw JSON client."""
    kube = await Kube.connect(control_plane.kubeconfig)
    yield kube
    await kube.close()


@pytest.fixture
async def app(
    api: Kube, namespace: str, tmp_path: Path
) -> AsyncIterator[tuple[dict[str, Any], Path]]:
    """A pod whose `app` container runs (pod runner) with volume `data` at /data, backed
    by a host directory; (the pod, that directory). Its `idle` container never runs."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "hello.txt").write_text("hello from the volume\n")
    spec = {
        "containers": [
            {
                "name": "app",
                "image": "debian:12",
                "command": ["sleep", "3600"],
                "env": [{"name": "GREETING", "value": "hi from the spec"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            {"name": "idle", "image": "debian:12", "command": ["sleep", "3600"]},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    await api.create(PODS, {"metadata": {"name": "app"}, "spec": spec}, namespace)

    async def scheduled() -> dict[str, Any] | None:
        pod = await api.get(PODS, "app", namespace)
        return pod if pod["spec"].get("nodeName") else None

    pod = await eventually(scheduled, timeout=30, what="the pod to be scheduled")
    runner = PodRunner(api, tmp_path / "pods")
    try:
        await runner.run(pod, "app", volumes={"data": volume})
        yield pod, volume
    finally:
        await runner.close()


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_binary(), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_kubectl_exec_sees_and_writes_the_containers_volume(
    control_plane: ControlPlane, app: tuple[dict[str, Any], Path], namespace: str
) -> None:
    pod, volume = app
    assert not Path("/data/hello.txt").exists(), "precondition: the host has no /data"
    script = "cat /data/hello.txt; echo $GREETING; date > /data/x; echo oops >&2; exit 4"
    done = await asyncio.to_thread(
        _kubectl,
        control_plane.kubeconfig,
        "exec",
        "-n",
        namespace,
        pod["metadata"]["name"],
        "-c",
        "app",
        "--",
        "sh",
        "-c",
        script,
    )
    assert done.stdout == "hello from the volume\nhi from the spec\n", done.stderr
    assert "oops" in done.stderr
    assert "command terminated with exit code 4" in done.stderr
    assert done.returncode == 4
    assert (volume / "x").read_text().strip(), "the command wrote into the volume"


async def test_kubectl_exec_with_stdin_and_a_terminal(
    control_plane: ControlPlane, app: tuple[dict[str, Any], Path], namespace: str
) -> None:
    _, volume = app
    kubectl = [kubectl_binary(), f"--kubeconfig={control_plane.kubeconfig}", "-n", namespace]
    piped = await asyncio.to_thread(
        subprocess.run,
        [*kubectl, "exec", "-i", "app", "-c", "app", "--", "sh", "-c", "cat > /data/in"],
        input="sent on stdin\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert (volume / "in").read_text() == "sent on stdin\n"
    # `script` gives kubectl a terminal, so `-it` asks for one in the container.
    remote = "tty >/dev/null && echo has-a-tty; read line; echo got:$line"
    line = " ".join([*kubectl, "exec", "-it", "app", "-c", "app", "--", "sh", "-c", f"'{remote}'"])
    interactive = await asyncio.to_thread(
        subprocess.run,
        ["script", "-qec", line, "/dev/null"],
        input="typed\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert interactive.returncode == 0, interactive.stdout + interactive.stderr
    assert "has-a-tty" in interactive.stdout
    assert "got:typed" in interactive.stdout


async def test_transport_returns_exit_code_and_output(
    api: Kube, app: tuple[dict[str, Any], Path], namespace: str
) -> None:
    _, volume = app
    exec_ = PodExec(api)
    code, output = await exec_.run(
        namespace, "app", "app", ["sh", "-c", "sync; date > /data/.frozen; echo frozen"], 30
    )
    assert (code, output) == (0, "frozen\n")
    assert (volume / ".frozen").exists()
    code, output = await exec_.run(
        namespace, "app", "app", ["sh", "-c", "echo out; echo err >&2; exit 3"], 30
    )
    assert code == 3
    assert sorted(output.splitlines()) == ["err", "out"]


async def test_output_is_bounded_to_its_end(
    api: Kube, app: tuple[dict[str, Any], Path], namespace: str
) -> None:
    code, output = await PodExec(api, max_output=100).run(
        namespace, "app", "app", ["seq", "1", "20000"], 30
    )
    assert code == 0
    head, _, kept = output.partition("\n")
    assert head.startswith("[") and "bytes of output dropped" in head
    assert len(kept.encode()) == 100
    assert kept.endswith("19999\n20000\n")


async def test_missing_pod_container_or_executable_is_a_clear_error(
    api: Kube, app: tuple[dict[str, Any], Path], namespace: str
) -> None:
    exec_ = PodExec(api)
    with pytest.raises(PodExecError) as missing:
        await exec_.run(namespace, "app", "nope", ["true"], 30)
    assert missing.value.status == 400
    assert "container nope is not valid for pod app" in str(missing.value)

    with pytest.raises(PodExecError) as not_running:
        await exec_.run(namespace, "app", "idle", ["true"], 30)
    assert not_running.value.status == 500
    assert "container not found ('idle')" in str(not_running.value)

    with pytest.raises(PodExecError) as no_pod:
        await exec_.run(namespace, "ghost", "app", ["true"], 30)
    assert no_pod.value.status == 404
    assert 'pods "ghost" not found' in str(no_pod.value)

    with pytest.raises(PodExecError) as no_binary:
        await exec_.run(namespace, "app", "app", ["no-such-binary"], 30)
    assert no_binary.value.status is None
    assert 'exec "no-such-binary": executable file not found' in str(no_binary.value)


async def test_timeout_ends_the_command(
    api: Kube, app: tuple[dict[str, Any], Path], namespace: str
) -> None:
    _, volume = app
    script = "echo started; sleep 3; date > /data/late"
    with pytest.raises(PodExecTimeout) as late:
        await PodExec(api).run(namespace, "app", "app", ["sh", "-c", script], 1)
    assert late.value.output == "started\n"
    await asyncio.sleep(4)
    assert not (volume / "late").exists(), "the command was killed with its connection"


async def test_exec_needs_get_and_create_on_pods_exec(
    control_plane: ControlPlane, api: Kube, app: tuple[dict[str, Any], Path], namespace: str
) -> None:
    alice = Kube(
        token_client(control_plane.server, control_plane.ca_file, control_plane.user_token("alice"))
    )
    try:
        with pytest.raises(PodExecError) as refused:
            await PodExec(alice).run(namespace, "app", "app", ["true"], 30)
        assert refused.value.status == 403
        assert 'cannot get resource "pods/exec"' in str(refused.value)

        await _grant(api, namespace, "alice", {**POD_EXEC, "verbs": ["create"]})
        with pytest.raises(PodExecError) as create_only:
            await PodExec(alice).run(namespace, "app", "app", ["true"], 30)
        assert create_only.value.status == 403

        await _grant(api, namespace, "alice", POD_EXEC)

        async def allowed() -> tuple[int, str] | None:
            try:
                return await PodExec(alice).run(namespace, "app", "app", ["echo", "ok"], 30)
            except PodExecError as exc:
                assert exc.status == 403, exc
                return None

        assert await eventually(allowed, timeout=10, what="the Role to apply") == (0, "ok\n")
    finally:
        await alice.close()


async def _grant(api: Kube, namespace: str, user: str, rule: dict[str, Any]) -> None:
    role = {"metadata": {"name": "exec", "namespace": namespace}, "rules": [rule]}
    role.update(apiVersion="rbac.authorization.k8s.io/v1", kind="Role")
    await api.apply(ROLES, role, field_manager="test", force=True)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "exec", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "exec"},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
    }
    await api.apply(ROLE_BINDINGS, binding, field_manager="test", force=True)


async def test_the_kubelet_lets_only_whom_rbac_allows_exec(
    control_plane: ControlPlane, app: tuple[dict[str, Any], Path], namespace: str, tmp_path: Path
) -> None:
    """A certificate of the cluster CA authenticates; RBAC (nodes/proxy) still decides."""
    pki = control_plane.state_dir / "pki"
    ca = KeyPair((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
    now = dt.datetime.now(dt.UTC)
    crt, key = write_pair(
        issue_client_cert(ca, "mallory", now, dt.timedelta(hours=1)), tmp_path, "m"
    )
    tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    tls.load_cert_chain(crt, key)
    st = control_plane.state
    url = f"https://{st.node_ip}:{st.kubelet_port}/exec/{namespace}/app/app?command=true&output=1"
    async with aiohttp.ClientSession() as session, session.get(url, ssl=tls) as resp:
        assert resp.status == 403
        assert "user=mallory" in await resp.text()


async def test_exec_runs_as_the_containers_user(api: Kube, namespace: str, tmp_path: Path) -> None:
    spec = {
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000]},
        "containers": [{"name": "app", "image": "debian:12", "command": ["sleep", "3600"]}],
    }
    await api.create(PODS, {"metadata": {"name": "nonroot"}, "spec": spec}, namespace)

    async def scheduled() -> dict[str, Any] | None:
        pod = await api.get(PODS, "nonroot", namespace)
        return pod if pod["spec"].get("nodeName") else None

    pod = await eventually(scheduled, timeout=30, what="the pod to be scheduled")
    runner = PodRunner(api, tmp_path / "pods")
    try:
        await runner.run(pod, "app")
        code, output = await PodExec(api).run(
            namespace, "nonroot", "app", ["sh", "-c", "id -u; id -g; id -G"], 30
        )
    finally:
        await runner.close()
    assert (code, output.split()) == (0, ["1000", "3000", "3000", "4000"])
