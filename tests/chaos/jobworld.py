"""The Job model's chaos world: a PVC backed up by Jobs (`pvc-backup`) and restored by
Jobs (`pvc-restore`) into new PVCs, and `JobPods`, which runs every Job pod's
containers as the kubelet would and keeps their handles so a fault can kill them.

Not for: the sidecar world or the storage servers (`tests.chaos.world`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Kube, KubeError
from stash.kube.resources import PODS, PVCS, SECRETS
from stash_dev.podrunner import PodRunner, PodRunnerError, RunningContainer
from tests.chaos.world import (
    FILES,
    World,
    backup_configuration,
    repository,
    runtime_settings,
    secret,
    write_tree,
)
from tests.e2e.jobs import claim_dir
from tests.support.cluster import eventually


class JobPods:
    """Runs the containers of every Job pod of a namespace, as a kubelet would."""

    def __init__(self, kube: Kube, runner: PodRunner, namespace: str) -> None:
        self.kube = kube
        self.runner = runner
        self.namespace = namespace
        self.running: list[RunningContainer] = []
        self._seen: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching for Job pods."""
        self._loop = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching; kill what still runs."""
        for task in [self._loop, *self._tasks]:
            if task is not None:
                task.cancel()
        for task in [self._loop, *self._tasks]:
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task

    async def _watch(self) -> None:
        while True:
            try:
                pods = (await self.kube.list(PODS, self.namespace, label_selector="job-name"))[
                    "items"
                ]
            except Exception:  # the apiserver may be restarting: a kubelet keeps watching
                pods = []
            for pod in pods:
                uid = pod["metadata"]["uid"]
                phase = (pod.get("status") or {}).get("phase")
                if uid in self._seen or not pod["spec"].get("nodeName"):
                    continue
                if phase not in (None, "Pending") or pod["metadata"].get("deletionTimestamp"):
                    continue
                self._seen.add(uid)
                task = asyncio.create_task(self._run(pod))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0.5)

    async def _run(self, pod: JSON) -> None:
        spec = pod["spec"]
        names = [c["name"] for c in spec.get("initContainers") or []]
        mains = [c["name"] for c in spec.get("containers") or []]
        try:
            for i, name in enumerate(names + mains):
                handle = await self.runner.run(pod, name, report_status=True)
                self.running.append(handle)
                try:
                    code = await handle.wait()
                finally:
                    self.running.remove(handle)
                if code != 0 and i < len(names):
                    return
        except (PodRunnerError, KubeError, OSError, aiohttp.ClientError, TimeoutError):
            return
        finally:
            with contextlib.suppress(Exception):
                await self.runner.release(pod)


@dataclass
class JobWorld(World):
    """A PVC backed up and restored by Jobs."""

    pods: JobPods | None = None
    source: Path = Path()
    restored: dict[str, str] = field(default_factory=dict)
    """RestoreSession name -> the PVC it restores into."""

    def agents(self) -> list[RunningContainer]:
        """The Job containers running now."""
        return list(self.pods.running) if self.pods else []

    async def restore(self, kube: Kube, index: int) -> str:
        """Create a RestoreSession of the latest snapshot into a new PVC `restored-<i>`."""
        name, claim = f"restore-{index}", f"restored-{index}"
        body = {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": name},
            "spec": {
                "task": {"name": "pvc-restore"},
                "repository": {"name": self.repository},
                "target": {
                    "volumeMounts": [{"name": claim, "mountPath": "/source/data"}],
                    "volumeClaimTemplates": [
                        {
                            "metadata": {"name": claim},
                            "spec": {
                                "accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": "1Gi"}},
                            },
                        }
                    ],
                    "rules": [{"paths": ["/source/data"]}],
                },
                "runtimeSettings": runtime_settings(True),
            },
        }

        async def create() -> bool:
            try:
                await kube.create(RESTORESESSIONS, body, self.namespace)
            except KubeError as exc:
                if exc.status in (500, 503, 504) or "webhook" in str(exc):
                    return False
                raise
            return True

        await eventually(create, timeout=60, interval=1, what=f"RestoreSession {name} created")
        self.restores.append(name)
        self.restored[name] = claim
        return name


async def job_world(
    kube: Kube, ns: str, key: str, backend: JSON, runner: PodRunner, tmp: Path
) -> JobWorld:
    """Create a PVC with FILES, its Repository and a `pvc-backup` BackupConfiguration."""
    world = JobWorld(
        key=key,
        namespace=ns,
        invoker=f"bc-{key}",
        repository=f"repo-{key}",
        backend=backend,
        secret_keys={},
        storage="rest",
        scratch=tmp / f"scratch-{key}",
    )
    await kube.create(SECRETS, secret(f"secret-{key}", {}), ns)
    await kube.create(REPOSITORIES, repository(world.repository, f"secret-{key}", backend), ns)
    claim = {
        "metadata": {"name": "data-pvc"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    await kube.create(PVCS, claim, ns)
    world.source = await claim_dir(kube, ns, "data-pvc")
    write_tree(world.source, FILES)
    bc = backup_configuration(world.invoker, world.repository, "PersistentVolumeClaim", "data-pvc")
    bc["spec"]["task"] = {"name": "pvc-backup"}
    bc["spec"]["target"]["volumeMounts"] = [{"name": "data-pvc", "mountPath": "/source/data"}]
    bc["spec"]["target"]["paths"] = ["/source/data"]
    await kube.create(BACKUPCONFIGURATIONS, bc, ns)
    world.pods = JobPods(kube, runner, ns)
    world.pods.start()
    return world
