"""The CSI snapshot stack for the VolumeSnapshotter tests, as plain processes against the
test control plane: the snapshot CRDs (external-snapshotter's client module),
snapshot-controller, and on one unix socket the test driver `dirplugin` with the real
csi-provisioner and csi-snapshotter sidecars (tests/csi: built and cached by
tests/csi/build.sh).

There is no kubelet, so nothing is mounted: a volume is the directory
`<state>/volumes/<volume handle>/` (`CsiStack.volume_dir`); tests write into it and read
the restored volume's directory back. Started once per test run, only by the tests that
ask for `csi_stack`; a component that cannot be built or started fails the test with
the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from stash.kube.client import Conflict, Kube, NotFound, Resource
from stash.kube.resources import CRDS, PVCS, PVS
from stash_dev import ControlPlane

DRIVER = "dir.csi.stash.test"
STORAGE_CLASS = "stash-csi-dir"
SNAPSHOT_CLASS = "stash-csi-dir"
STORAGECLASSES = Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", False)
SNAPSHOTCLASSES = Resource(
    "snapshot.storage.k8s.io", "v1", "volumesnapshotclasses", "VolumeSnapshotClass", False
)
_BUILD = Path(__file__).resolve().parents[1] / "csi" / "build.sh"


def build_stack() -> Path:
    """tests/csi/build.sh's cache directory (bin/, crd/); fails the test if it can't."""
    try:
        done = subprocess.run(
            [str(_BUILD)], capture_output=True, text=True, timeout=3600, check=True
        )
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"tests/csi/build.sh failed:\n{exc.stderr[-3000:]}", pytrace=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"tests/csi/build.sh could not run: {exc}", pytrace=False)
    return Path(done.stdout.strip().splitlines()[-1])


@dataclass
class CsiStack:
    """The running stack: where volumes live, and the processes (by name)."""

    state: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def volume_dir(self, handle: str) -> Path:
        """The directory that is the volume `handle` (a PV's spec.csi.volumeHandle)."""
        return self.state / "volumes" / handle

    def logs(self, tail: int = 30) -> str:
        """The last lines of each component's log."""
        out = []
        for path in sorted((self.state / "logs").glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"== {path.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def check_alive(self) -> None:
        """Fail when a component died (with its log)."""
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        if dead:
            pytest.fail(f"CSI components exited: {dead}\n{self.logs()}", pytrace=False)

    def stop(self) -> None:
        """SIGTERM every component, then SIGKILL what is left."""
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


async def volume_handle(kube: Kube, ns: str, claim: str, timeout: float = 60) -> str:
    """The volume handle of `claim` once it is Bound to a CSI volume."""
    deadline = time.monotonic() + timeout
    last: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            pvc = await kube.get(PVCS, claim, ns)
        except NotFound:  # a StatefulSet's claim not made yet
            await asyncio.sleep(0.2)
            continue
        last = pvc.get("status") or {}
        name = (pvc.get("spec") or {}).get("volumeName")
        if last.get("phase") == "Bound" and name:
            pv = await kube.get(PVS, name)
            return str(pv["spec"]["csi"]["volumeHandle"])
        await asyncio.sleep(0.2)
    raise AssertionError(f"claim {ns}/{claim} not Bound after {timeout}s: {last}")


def claim(name: str, size: str = "10Mi", **spec: object) -> dict[str, object]:
    """A PVC of the stack's StorageClass."""
    body: dict[str, object] = {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": STORAGE_CLASS,
        "resources": {"requests": {"storage": size}},
    }
    body.update(spec)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": body,
    }


async def _install_crds(kube: Kube, crd_dir: Path) -> None:
    names = []
    for path in sorted(crd_dir.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        names.append(crd["metadata"]["name"])
        with contextlib.suppress(Conflict):
            await kube.create(CRDS, crd)
    for name in names:
        for _ in range(300):
            conds = (await kube.get(CRDS, name)).get("status", {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"snapshot CRD {name} never became Established", pytrace=False)


async def _install_classes(kube: Kube) -> None:
    sc = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS},
        "provisioner": DRIVER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }
    vsc = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshotClass",
        "metadata": {"name": SNAPSHOT_CLASS},
        "driver": DRIVER,
        "deletionPolicy": "Delete",
    }
    for res, body in ((STORAGECLASSES, sc), (SNAPSHOTCLASSES, vsc)):
        with contextlib.suppress(Conflict):
            await kube.create(res, body)


def _start(stack: CsiStack, name: str, argv: list[str]) -> None:
    log = (stack.state / "logs" / f"{name}.log").open("ab")
    stack.procs[name] = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()


async def start_stack(cp: ControlPlane, state: Path) -> CsiStack:
    """Build (cached), install the CRDs and classes, start the four components."""
    out = await asyncio.to_thread(build_stack)
    bin_dir = out / "bin"
    (state / "logs").mkdir(parents=True, exist_ok=True)
    stack = CsiStack(state)
    kube = await Kube.connect(cp.kubeconfig)
    try:
        await _install_crds(kube, out / "crd")
        await _install_classes(kube)
    finally:
        await kube.close()
    sock = state / "csi.sock"
    kc = str(cp.kubeconfig)
    _start(
        stack,
        "dirplugin",
        [
            str(bin_dir / "dirplugin"),
            f"--endpoint=unix://{sock}",
            f"--drivername={DRIVER}",
            f"--statedir={state}",
        ],
    )
    for _ in range(100):
        if sock.exists():
            break
        await asyncio.sleep(0.1)
    common = [f"--kubeconfig={kc}", "--v=3"]
    _start(stack, "snapshot-controller", [str(bin_dir / "snapshot-controller"), *common])
    _start(
        stack,
        "csi-snapshotter",
        [str(bin_dir / "csi-snapshotter"), f"--csi-address={sock}", *common],
    )
    _start(
        stack,
        "csi-provisioner",
        [str(bin_dir / "csi-provisioner"), f"--csi-address={sock}", *common],
    )
    await asyncio.sleep(1)
    stack.check_alive()
    return stack


_STACK: list[CsiStack] = []


@pytest.fixture(scope="session")
async def csi_stack(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[CsiStack]:
    """The CSI snapshot stack, once per test run (module docstring)."""
    stack = await start_stack(control_plane, tmp_path_factory.mktemp("csi"))
    _STACK.append(stack)
    yield stack
    stack.stop()
    _STACK.clear()


def stack_logs() -> Iterator[str]:
    """The running stack's logs (for a failing test's report), if one runs."""
    for stack in _STACK:
        yield stack.logs()
