"""What the chaos suite backs up and restores: one namespace of user objects, their
agents run by the pod runner, and the storage servers they write to.

What it is for:

* `ChaosRestServer` — a rest-server the suite may stop, start again on the same port
  and data, and restart with a size limit (`--max-size`: the repository's disk is full).
* `SidecarWorld` — a Deployment whose injected `stash` sidecar backs up its volume into
  a Repository (on the rest-server or on moto's S3); the sidecar can be killed and run
  again.
* the Job model's world is in `tests.chaos.jobworld`.

Not for: faults (`tests.chaos.faults`) or the checks after a run
(`tests.chaos.invariants`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from stash.contract.resources import (
    BACKUPCONFIGURATIONS,
    REPOSITORIES,
)
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, KubeError
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash.restic import Restic
from stash_dev.podrunner import PodRunner, RunningContainer
from tests.integration.agent.conftest import PASSWORD, agent_env, host_restic, injected_pods
from tests.support.cluster import eventually
from tests.support.storage import S3_KEY_ID, S3_SECRET, MotoServer, RestServer

#: The files every world backs up (a restore must give back exactly these).
FILES: dict[str, bytes] = {
    "a.txt": b"alpha\n",
    "dir/b.bin": bytes(range(256)) * 512,
    "dir/c.txt": "unicode \u2713\n".encode(),
}
#: Retention never removes a snapshot during a chaos run: each must keep its session.
KEEP_LAST = 10_000


class ChaosRestServer(RestServer):
    """A rest-server that can be stopped, restarted and given a size limit."""

    def restart(self, max_size: int | None = None) -> None:
        """Stop, then start again on the same port and data (`max_size`: a full disk)."""
        self.stop()
        base = [a for a in self.argv if a != "--max-size"]
        if "--max-size" in self.argv:
            i = self.argv.index("--max-size")
            base = self.argv[:i] + self.argv[i + 2 :]
        self.argv = base + (["--max-size", str(max_size)] if max_size is not None else [])
        self.start()

    def used_bytes(self) -> int:
        """Bytes stored under the data directory (what --max-size counts)."""
        return sum(p.stat().st_size for p in self.data.rglob("*") if p.is_file())


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Write `files` (relative path -> bytes) under `root`."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under `root`, relative path -> bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


class SessionNames:
    """BackupSession names `<invoker>-<unix>`: a distinct second for every trigger."""

    def __init__(self) -> None:
        self._last = 0

    def when(self) -> dt.datetime:
        """A time whose second no earlier trigger of this run used."""
        now = int(dt.datetime.now(dt.UTC).timestamp())
        self._last = max(now, self._last + 1)
        return dt.datetime.fromtimestamp(self._last, dt.UTC)


@dataclass
class World:
    """One invoker, its Repository and where it stores (shared by both world kinds)."""

    key: str
    namespace: str
    invoker: str
    repository: str
    backend: JSON
    secret_keys: dict[str, str]
    storage: str
    scratch: Path
    sessions: list[str] = field(default_factory=list)
    restores: list[str] = field(default_factory=list)

    def restic(self) -> Restic:
        """A restic driver on the test host for this world's repository."""
        return host_restic(self.backend, _restic_bin(), self.scratch, **self.secret_keys)

    async def trigger(self, kube: Kube, names: SessionNames) -> str:
        """A BackupSession of the invoker, as `kubectl stash trigger` creates it; retried
        while the validating webhook cannot be called (its operator is down)."""
        bc = await kube.get(BACKUPCONFIGURATIONS, self.invoker, self.namespace)
        when = names.when()

        async def create() -> str | None:
            try:
                return await create_backup_session(kube, bc, when)
            except KubeError as exc:
                if exc.status in (500, 503, 504) or "webhook" in str(exc):
                    return None
                raise

        name = await eventually(create, timeout=60, interval=1, what="the session created")
        self.sessions.append(name)
        return name

    def agents(self) -> list[RunningContainer]:
        """The agent containers running now (what a kill fault kills)."""
        raise NotImplementedError


_RESTIC_BIN: list[str] = []


def _restic_bin() -> str:
    return _RESTIC_BIN[0]


def secret(name: str, keys: dict[str, str]) -> JSON:
    """The storage Secret of a world."""
    return {"metadata": {"name": name}, "stringData": {"RESTIC_PASSWORD": PASSWORD, **keys}}


def repository(name: str, secret_name: str, backend: JSON) -> JSON:
    """A Repository with `backend`."""
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name},
        "spec": {"backend": {**backend, "storageSecretName": secret_name}},
    }


def storage_backend(storage: str, rest: RestServer, moto: MotoServer, name: str) -> JSON:
    """A fresh location on the rest-server or in a new moto bucket."""
    if storage == "rest":
        return {"rest": {"url": f"{rest.url}/{name}"}}
    bucket = f"chaos-{name}"[:63]
    moto.create_bucket(bucket)
    return {"s3": {"endpoint": moto.endpoint, "bucket": bucket, "prefix": name}}


def storage_keys(storage: str) -> dict[str, str]:
    """The Secret keys (besides the password) of a storage kind."""
    if storage == "s3":
        return {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    return {}


@dataclass
class SidecarWorld(World):
    """A Deployment backed up by its injected sidecar."""

    app: str = ""
    data: Path = Path()
    runner: PodRunner | None = None
    pod: JSON | None = None
    agent: RunningContainer | None = None

    def agents(self) -> list[RunningContainer]:
        """The sidecar, while it runs."""
        return [self.agent] if self.agent and self.agent.exit_code is None else []

    async def start_agent(self, kube: Kube) -> None:
        """Run the sidecar of the (only) pod of the Deployment."""
        assert self.runner is not None
        (self.pod,) = await injected_pods(kube, self.namespace, self.app, "stash")
        self.agent = await self.runner.run(self.pod, "stash", volumes={"data": self.data})

    async def restart_agent(self) -> None:
        """Start the sidecar again (a container restarted by its kubelet)."""
        assert self.runner is not None and self.pod is not None
        if self.agent is not None and self.agent.exit_code is None:
            return
        self.agent = await self.runner.run(self.pod, "stash", volumes={"data": self.data})


async def sidecar_world(
    kube: Kube, ns: str, key: str, storage: str, backend: JSON, runner: PodRunner, tmp: Path
) -> SidecarWorld:
    """Create the objects of a sidecar world and start its agent."""
    keys = storage_keys(storage)
    world = SidecarWorld(
        key=key,
        namespace=ns,
        invoker=f"bc-{key}",
        repository=f"repo-{key}",
        backend=backend,
        secret_keys=keys,
        storage=storage,
        scratch=tmp / f"scratch-{key}",
        app=f"web-{key}",
        data=tmp / f"data-{key}",
        runner=runner,
    )
    write_tree(world.data, FILES)
    await kube.create(SECRETS, secret(f"secret-{key}", keys), ns)
    await kube.create(REPOSITORIES, repository(world.repository, f"secret-{key}", backend), ns)
    await kube.create(DEPLOYMENTS, _deployment(world.app), ns)
    bc = backup_configuration(world.invoker, world.repository, "Deployment", world.app)
    bc["spec"]["target"]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    bc["spec"]["target"]["paths"] = ["/data"]
    await kube.create(BACKUPCONFIGURATIONS, bc, ns)
    await world.start_agent(kube)
    return world


def _deployment(app: str) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "busybox",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def runtime_settings(job: bool) -> JSON:
    settings: JSON = {"container": {"env": agent_env(_restic_bin())}}
    if job:  # this host's Python lives under /root: the Job's pod runs as root
        settings["pod"] = {"securityContext": {"runAsUser": 0}}
    return settings


def backup_configuration(name: str, repo: str, kind: str, target: str) -> JSON:
    api = "v1" if kind == "PersistentVolumeClaim" else "apps/v1"
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": name},
        "spec": {
            "schedule": "0 0 1 1 *",  # never fires during a run; sessions are triggered
            "repository": {"name": repo},
            "target": {"ref": {"apiVersion": api, "kind": kind, "name": target}},
            "retentionPolicy": {"name": "keep-all", "keepLast": KEEP_LAST, "prune": True},
            "backupHistoryLimit": KEEP_LAST,  # every session stays to vouch for its snapshot
            "runtimeSettings": runtime_settings(kind == "PersistentVolumeClaim"),
        },
    }


def set_restic_bin(path: str) -> None:
    """Where restic is (the agents' PATH and the checks use it)."""
    _RESTIC_BIN[:] = [path]


def random_payload(world: SidecarWorld, size: int = 64 * 1024) -> None:
    """Change the sidecar world's data a little, so each backup uploads something."""
    write_tree(world.data, {"changing.bin": os.urandom(size)})
