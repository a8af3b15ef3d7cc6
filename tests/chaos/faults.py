"""The faults the chaos suite injects, each with how it is undone.

A `Fault` is chosen for a run, `prepare`d before the session starts (a full disk, a
corrupt pack), `inject`ed at a random moment while the session runs (a kill, a storage
server going away), `recover`ed after a random hold (what a kubelet, a Deployment or an
admin does next), and `settle`d once the session is final (checks that belong to this
fault, and putting storage back). `inject` says whether the fault hit something (an
agent kill finds no agent once the session is over); only hits count as injections.

Not for: the invariants every run must keep (`tests.chaos.invariants`) or the loop
(`tests.chaos.engine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stash.contract.resources import BACKUPSESSIONS, REPOSITORIES
from stash.kube.client import JSON, Kube, NotFound, Resource
from stash_dev import ControlPlane
from tests.chaos.jobworld import JobWorld
from tests.chaos.processes import OperatorReplica, kill_named, kill_tree
from tests.chaos.world import ChaosRestServer, SidecarWorld, World
from tests.support.cluster import eventually
from tests.support.storage import MotoServer

LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
MUTATING = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    namespaced=False,
)
VALIDATING = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    namespaced=False,
)


@dataclass
class Cluster:
    """Everything a fault may act on."""

    kube: Kube
    control_plane: ControlPlane
    namespace: str
    lease_namespace: str
    webhook_config: str
    replicas: list[OperatorReplica]
    rest: ChaosRestServer
    moto: MotoServer
    rng: random.Random
    notes: list[str] = field(default_factory=list)

    async def leader(self) -> OperatorReplica | None:
        """The replica holding the Lease now (by the PID in its identity), if any."""
        try:
            lease = await self.kube.get(LEASES, "stash-operator", self.lease_namespace)
        except NotFound:
            return None
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
        for r in self.replicas:
            if r.pid is not None and f"-{r.pid}-" in holder:
                return r
        return None

    async def replicas_ready(self) -> None:
        """Start every replica that is down and wait until each answers /readyz."""
        for r in self.replicas:
            if r.pid is None:
                r.start()
        for r in self.replicas:
            await eventually(r.ready, timeout=90, interval=0.5, what=f"operator {r.name} ready")


class Fault:
    """A fault; subclasses override what they need."""

    name = "fault"
    #: Seconds after the session starts within which the fault is injected.
    window = 6.0
    #: Also injected during RestoreSessions.
    restores = True

    def applies(self, world: World) -> bool:
        """Whether this fault can hit a run of `world`."""
        return True

    async def prepare(self, c: Cluster, world: World) -> None:
        """Before the session starts."""

    async def inject(self, c: Cluster, world: World) -> bool:
        """Inject now; whether something was hit."""
        raise NotImplementedError

    async def recover(self, c: Cluster, world: World) -> None:
        """Undo what a kubelet, a controller or an admin would undo."""

    async def settle(self, c: Cluster, world: World, session: JSON | None) -> list[str]:
        """After the session is final: this fault's own violations (and storage put back)."""
        return []


class KillAgent(Fault):
    """SIGKILL an agent container (the sidecar or a Job pod's container) with its restic."""

    name = "kill-agent"

    async def inject(self, c: Cluster, world: World) -> bool:
        agents = world.agents()
        if not agents:
            return False
        victim = c.rng.choice(agents)
        kill_tree(victim.pid)
        with contextlib.suppress(TimeoutError):
            await victim.wait(30)
        return True

    async def recover(self, c: Cluster, world: World) -> None:
        if isinstance(world, SidecarWorld):
            await world.restart_agent()


class KillRestic(Fault):
    """SIGKILL the restic an agent runs; the agent lives on."""

    name = "kill-restic"
    window = 4.0

    async def inject(self, c: Cluster, world: World) -> bool:
        return sum(kill_named(a.pid, "restic") for a in world.agents()) > 0


class KillOperator(Fault):
    """SIGKILL the leader or a follower replica; it is started again after a hold."""

    def __init__(self, leader: bool) -> None:
        self.leader = leader
        self.name = "kill-operator-leader" if leader else "kill-operator-follower"
        self.victim: OperatorReplica | None = None

    async def inject(self, c: Cluster, world: World) -> bool:
        lead = await c.leader()
        live = [r for r in c.replicas if r.pid is not None]
        if self.leader:
            self.victim = lead
        else:
            others = [r for r in live if r is not lead]
            self.victim = c.rng.choice(others) if others else None
        if self.victim is None:
            return False
        self.victim.kill()
        return True

    async def recover(self, c: Cluster, world: World) -> None:
        await c.replicas_ready()


class RestartRestServer(Fault):
    """The rest-server is killed and comes back after a hold (same port and data)."""

    name = "storage-restart"

    def applies(self, world: World) -> bool:
        return world.storage == "rest"

    async def inject(self, c: Cluster, world: World) -> bool:
        proc = c.rest.proc
        if proc is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        return True

    async def recover(self, c: Cluster, world: World) -> None:
        await asyncio.to_thread(c.rest.restart)


class PauseMoto(Fault):
    """moto_server stops answering (SIGSTOP) and resumes after a hold: in-memory S3
    would lose every bucket if killed, so the S3 outage is a freeze."""

    name = "storage-freeze"

    def applies(self, world: World) -> bool:
        return world.storage == "s3"

    async def inject(self, c: Cluster, world: World) -> bool:
        assert c.moto.proc is not None
        os.killpg(c.moto.proc.pid, signal.SIGSTOP)
        return True

    async def recover(self, c: Cluster, world: World) -> None:
        assert c.moto.proc is not None
        os.killpg(c.moto.proc.pid, signal.SIGCONT)


class DiskFull(Fault):
    """The repository's disk is full for the whole session: rest-server restarted with
    `--max-size` at what it stores now, so every upload is refused."""

    name = "disk-full"
    restores = False

    def applies(self, world: World) -> bool:
        return world.storage == "rest"

    async def prepare(self, c: Cluster, world: World) -> None:
        used = await asyncio.to_thread(c.rest.used_bytes)
        await asyncio.to_thread(c.rest.restart, used)

    async def inject(self, c: Cluster, world: World) -> bool:
        return True

    async def settle(self, c: Cluster, world: World, session: JSON | None) -> list[str]:
        await asyncio.to_thread(c.rest.restart, None)
        return []


def _packs(rest: ChaosRestServer, world: World) -> list[Path]:
    url = str(world.backend["rest"]["url"])
    repo = rest.data / url.rsplit("/", 1)[1] / "data"
    return sorted(p for p in repo.rglob("*") if p.is_file())


def _condition(obj: JSON, type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


class CorruptPack(Fault):
    """A pack file is cut in half before the session; afterwards the session must not
    have called the repository sound, and the pack is put back."""

    name = "corrupt-pack"
    restores = False

    def __init__(self) -> None:
        self.saved: tuple[Path, bytes] | None = None

    def applies(self, world: World) -> bool:
        return world.storage == "rest"

    async def prepare(self, c: Cluster, world: World) -> None:
        packs = _packs(c.rest, world)
        self.saved = None
        if packs:
            victim = c.rng.choice(packs)
            data = victim.read_bytes()
            self.saved = (victim, data)
            victim.write_bytes(data[: len(data) // 2])

    async def inject(self, c: Cluster, world: World) -> bool:
        return self.saved is not None

    async def settle(self, c: Cluster, world: World, session: JSON | None) -> list[str]:
        problems: list[str] = []
        if self.saved is None:
            return problems
        if session is not None and session.get("kind") == "BackupSession":
            live = await c.kube.get(BACKUPSESSIONS, session["metadata"]["name"], c.namespace)
            verified = _condition(live, "RepositoryIntegrityVerified")
            repo = await c.kube.get(REPOSITORIES, world.repository, c.namespace)
            integrity = (repo.get("status") or {}).get("integrity")
            if verified.get("status") == "True":
                problems.append(
                    f"false success: {live['metadata']['name']} says the repository is sound "
                    f"with pack {self.saved[0].name} cut in half: {verified.get('message')}"
                )
            if verified and integrity is not False:
                problems.append(
                    f"false success: Repository {world.repository} integrity is {integrity!r} "
                    "after a check that ran over a corrupt pack"
                )
        path, data = self.saved
        path.write_bytes(data)
        self.saved = None
        return problems


class RestartApiserver(Fault):
    """kube-apiserver is stopped and started again (the dev control plane's restart)."""

    name = "apiserver-restart"
    window = 5.0

    async def inject(self, c: Cluster, world: World) -> bool:
        await asyncio.to_thread(c.control_plane.restart_apiserver)
        return True


class DropWebhook(Fault):
    """Both webhook configurations are deleted; the leader must register them again
    (it looks every STASH_WEBHOOK_RECHECK_INTERVAL seconds) with no replica restarted."""

    name = "drop-webhook"

    async def inject(self, c: Cluster, world: World) -> bool:
        for res in (MUTATING, VALIDATING):
            with contextlib.suppress(NotFound):
                await c.kube.delete(res, c.webhook_config)
        return True

    async def recover(self, c: Cluster, world: World) -> None:
        # No replica is restarted now; the choice of one is still drawn, so a seed
        # replays the same choices it made when this fault did restart one.
        c.rng.choice(c.replicas)

    async def settle(self, c: Cluster, world: World, session: JSON | None) -> list[str]:
        async def registered() -> bool:
            for res in (MUTATING, VALIDATING):
                try:
                    await c.kube.get(res, c.webhook_config)
                except NotFound:
                    return False
            return True

        try:
            await eventually(registered, timeout=30, interval=0.5, what="webhooks registered")
        except AssertionError:
            victim = c.rng.choice(c.replicas)  # put them back for the next runs
            victim.kill()
            await c.replicas_ready()
            return ["the deleted webhook configurations were not registered again"]
        return []


def catalogue() -> list[tuple[Fault, float]]:
    """Every fault with its weight."""
    return [
        (KillAgent(), 3.0),
        (KillRestic(), 2.0),
        (KillOperator(leader=True), 2.0),
        (KillOperator(leader=False), 1.0),
        (RestartRestServer(), 1.5),
        (PauseMoto(), 1.0),
        (DiskFull(), 1.0),
        (CorruptPack(), 1.0),
        (RestartApiserver(), 0.7),
        (DropWebhook(), 0.7),
    ]


def fits(fault: Fault, world: World, restore: bool) -> bool:
    """Whether `fault` may hit this run."""
    if restore and not fault.restores:
        return False
    if isinstance(world, JobWorld) and isinstance(fault, PauseMoto):
        return False
    return fault.applies(world)
