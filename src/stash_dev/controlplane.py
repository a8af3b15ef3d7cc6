"""Start, wait for and stop a loopback Kubernetes control plane built from upstream sources.

One `ktc` binary (tests/cluster) runs etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, each as its own process group; a stand-in kubelet (`stash_dev.kubelet`)
registers fake Nodes and moves scheduled Pods to Running. Component logs go to files in
the state directory; their command lines are in `stash_dev.components`, and the
addresses Nodes and pods get in `stash_dev.podips`. The admin credential is a static
bearer token in group system:masters; a few unprivileged users exist for RBAC tests. The
methods block (they wait for processes); from async code call them with
`asyncio.to_thread`. Readiness is asked through `Kube` (`stash_dev.probes`).

Not for: anything that talks to a real cluster. Pods never run containers here.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stash_dev import components, pki, podips
from stash_dev.probes import NotReady, Probes, run_blocking, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tests" / "cluster" / "build.sh"

#: Unprivileged users (static tokens, no groups beyond system:authenticated).
RESTRICTED_USERS = ["alice", "bob"]


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached; the message says why."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pod_cidr() -> str | None:
    """The range pods get addresses of their own from: STASH_DEV_POD_CIDR (empty: none),
    else podips.DEFAULT_POD_CIDR when this host routes it to itself; None: every pod is
    at the node's address."""
    chosen = os.environ.get("STASH_DEV_POD_CIDR")
    if chosen is not None:
        return chosen or None
    return podips.DEFAULT_POD_CIDR if podips.routed_locally(podips.DEFAULT_POD_CIDR) else None


def ktc_binary() -> Path:
    """Return the path of the cached `ktc` binary, building it when missing."""
    override = os.environ.get("STASH_KTC")
    if override:
        return Path(override)
    if not BUILD_SCRIPT.exists():
        raise ControlPlaneError(f"{BUILD_SCRIPT} is missing; run from a stash source checkout")
    proc = subprocess.run(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"building the test control plane failed ({BUILD_SCRIPT})")
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass
class _State:
    """What `stash dev down` and `attach()` need to find a running control plane."""

    state_dir: str
    binary: str
    etcd_port: int
    etcd_peer_port: int
    apiserver_port: int
    kcm_port: int
    scheduler_port: int
    admin_token: str
    user_tokens: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)
    node_ip: str = podips.LOOPBACK
    pod_cidr: str | None = None
    kubelet_port: int = 0


class ControlPlane:
    """A local control plane rooted at `state_dir` (PKI, etcd data, logs, kubeconfig)."""

    def __init__(self, state_dir: Path, binary: Path | None = None, nodes: int = 2) -> None:
        self.state_dir = state_dir.resolve()
        self._binary = binary
        self.nodes = nodes
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._state: _State | None = None

    # ----------------------------------------------------------------- properties
    @property
    def state(self) -> _State:
        """What a running control plane recorded (ports, tokens, pids)."""
        if self._state is None:
            raise ControlPlaneError("control plane not started")
        return self._state

    @property
    def server(self) -> str:
        """The apiserver URL, https://127.0.0.1:PORT."""
        return f"https://127.0.0.1:{self.state.apiserver_port}"

    @property
    def admin_token(self) -> str:
        """The bearer token of `admin` (group system:masters)."""
        return self.state.admin_token

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (token auth, CA embedded)."""
        return self.state_dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        """The cluster CA certificate (PEM)."""
        return self.state_dir / "pki" / "ca.crt"

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (plain HTTP on loopback)."""
        return f"http://127.0.0.1:{self.state.etcd_port}"

    @property
    def log_dir(self) -> Path:
        """Where each component writes `<name>.log`."""
        return self.state_dir / "logs"

    def user_token(self, user: str) -> str:
        """The static token of one of RESTRICTED_USERS."""
        return self.state.user_tokens[user]

    # ----------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 120.0) -> None:
        """Generate PKI, start every component in order and wait until each is ready."""
        binary = self._binary or ktc_binary()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        (self.state_dir / "pki").mkdir(parents=True)
        self.log_dir.mkdir()
        self._state = _State(
            state_dir=str(self.state_dir),
            binary=str(binary),
            etcd_port=_free_port(),
            etcd_peer_port=_free_port(),
            apiserver_port=_free_port(),
            kcm_port=_free_port(),
            scheduler_port=_free_port(),
            admin_token=secrets.token_hex(24),
            user_tokens={u: secrets.token_hex(24) for u in RESTRICTED_USERS},
            node_ip=podips.node_address(),
            pod_cidr=pod_cidr(),
            kubelet_port=_free_port(),
        )
        self._write_pki_and_config()
        try:
            run_blocking(self._start_components(time.monotonic() + timeout))
        except BaseException:
            self.stop()
            raise
        self._save_state()

    async def _start_components(self, deadline: float) -> None:
        async with Probes(self.kubeconfig, self.etcd_url) as probe:
            self._spawn("etcd", self._etcd_args())
            await self._wait("etcd", deadline, probe.etcd_healthy)
            self._spawn("kube-apiserver", self._apiserver_args())
            await self._wait("kube-apiserver", deadline, probe.apiserver_ready)
            self._spawn("kube-controller-manager", self._kcm_args())
            self._spawn("kube-scheduler", self._scheduler_args())
            self._spawn_kubelet()
            await self._wait("kube-controller-manager", deadline, probe.controller_manager_working)
            await self._wait("kubelet", deadline, lambda: probe.nodes_ready(self.nodes))

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every component (newest first), SIGKILL what is left after `grace`."""
        pids = dict(self._state.pids) if self._state else {}
        for name, pid in reversed(list(pids.items())):
            _signal_group(pid, signal.SIGTERM)
            proc = self._procs.get(name)
            end = time.monotonic() + grace
            while time.monotonic() < end and _alive(pid, proc):
                time.sleep(0.05)
            if _alive(pid, proc):
                _signal_group(pid, signal.SIGKILL)
            if proc is not None:
                proc.wait()
        self._procs.clear()
        if self._state:
            self._state.pids.clear()

    def restart_apiserver(self, timeout: float = 60.0, down_for: float = 0.0) -> None:
        """Stop and start kube-apiserver alone (for watch-resume tests), leaving it down
        for `down_for` seconds in between (an outage of a known length)."""
        pid = self.state.pids.pop("kube-apiserver")
        proc = self._procs.pop("kube-apiserver", None)
        _signal_group(pid, signal.SIGTERM)
        if proc is not None:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(pid, signal.SIGKILL)
                proc.wait()
        time.sleep(down_for)
        self._spawn("kube-apiserver", self._apiserver_args())
        run_blocking(self._await_apiserver(time.monotonic() + timeout))
        self._save_state()

    async def _await_apiserver(self, deadline: float) -> None:
        async with Probes(self.kubeconfig, self.etcd_url) as probe:
            await self._wait("kube-apiserver", deadline, probe.apiserver_ready)

    @classmethod
    def attach(cls, state_dir: Path) -> ControlPlane:
        """A handle on a control plane started by another process (for `stash dev down`)."""
        raw = json.loads((state_dir / "state.json").read_text())
        cp = cls(Path(raw["state_dir"]))
        cp._state = _State(**raw)
        return cp

    def running(self) -> bool:
        """True when every recorded component process is still alive."""
        return bool(self._state and self._state.pids) and all(
            _alive(pid, self._procs.get(n)) for n, pid in self.state.pids.items()
        )

    def logs(self, tail: int = 60) -> str:
        """The last `tail` lines of each component's log, for failing tests."""
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"===== {path.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(out)

    # ----------------------------------------------------------------- internals
    def _write_pki_and_config(self) -> None:
        ca = pki.write_cluster_pki(
            self.state_dir / "pki", dt.datetime.now(dt.UTC), self.state.node_ip
        )
        st = self.state
        rows = [f'{st.admin_token},admin,admin-uid,"system:masters"']
        rows += [f"{tok},{user},{user}-uid" for user, tok in st.user_tokens.items()]
        tokens = self.state_dir / "tokens.csv"
        tokens.write_text("\n".join(rows) + "\n")
        tokens.chmod(0o600)
        self.kubeconfig.write_text(render_kubeconfig(self.server, ca.cert_pem, st.admin_token))
        self.kubeconfig.chmod(0o600)

    def _etcd_args(self) -> list[str]:
        st = self.state
        return components.etcd_args(self.state_dir, st.etcd_port, st.etcd_peer_port)

    def _apiserver_args(self) -> list[str]:
        st = self.state
        return components.apiserver_args(self.state_dir, st.etcd_port, st.apiserver_port)

    def _kcm_args(self) -> list[str]:
        return components.kcm_args(self.state_dir, self.kubeconfig, self.state.kcm_port)

    def _scheduler_args(self) -> list[str]:
        return components.scheduler_args(self.state_dir, self.kubeconfig, self.state.scheduler_port)

    def _spawn(self, name: str, args: list[str]) -> None:
        self._spawn_cmd(name, [self.state.binary, *args])

    def _spawn_kubelet(self) -> None:
        st = self.state
        cmd = components.kubelet_command(
            self.state_dir, self.kubeconfig, self.nodes, st.node_ip, st.pod_cidr, st.kubelet_port
        )
        self._spawn_cmd("kubelet", cmd)

    def _spawn_cmd(self, name: str, cmd: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            cwd=self.state_dir,
        )
        log.close()
        self._procs[name] = proc
        self.state.pids[name] = proc.pid

    async def _wait(self, name: str, deadline: float, ready: Callable[[], Awaitable[bool]]) -> None:
        def exited() -> str | None:
            proc = self._procs.get(name)
            if proc is None or proc.poll() is None:
                return None
            return f"exited with code {proc.returncode}"

        try:
            await wait_until(name, deadline, ready, exited)
        except NotReady as exc:
            raise ControlPlaneError(f"{exc}\n{self.logs(40)}") from None

    def _save_state(self) -> None:
        path = self.state_dir / "state.json"
        path.write_text(json.dumps(asdict(self.state), indent=2))
        path.chmod(0o600)


def render_kubeconfig(server: str, ca_pem: bytes, token: str, user: str = "admin") -> str:
    """A kubeconfig (JSON is valid YAML) with the CA embedded and bearer-token auth."""
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "stash-dev",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "stash-dev", "context": {"cluster": "stash-dev", "user": user}}],
        "current-context": "stash-dev",
    }
    return json.dumps(cfg, indent=2) + "\n"


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int, proc: subprocess.Popen[bytes] | None) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False
