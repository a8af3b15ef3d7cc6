"""Fixtures of the chaos suite: two operator replicas with leader election as real
processes, a rest-server and a moto_server of its own (it stops them), agents run by
the pod runner, and the worlds they back up — all in the test's namespace.

Settings (environment): STASH_CHAOS_INJECTIONS (faulted runs; `make test` does a few,
`make chaos` at least 100), STASH_CHAOS_SEED (replays a run's choices; random when
unset, printed either way), STASH_CHAOS_OPERATOR_ROUNDS (operator kill rounds under
the webhook probe); to replay one kind of run, STASH_CHAOS_FAULTS (fault names,
comma-separated) and STASH_CHAOS_WORLDS (`rest`, `s3`, `job`). STASH_CHAOS_STRICT
(`make chaos` sets it) fails on the orphan snapshots of open bugs too
(`engine.KNOWN_ORPHAN_FAULTS`), which the bounded form only counts and reports.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stash.kube.client import Kube, NotFound
from stash.kube.resources import NAMESPACES
from stash_dev import ControlPlane
from stash_dev.podrunner import PodRunner
from tests.chaos.faults import MUTATING, VALIDATING, Cluster
from tests.chaos.jobworld import JobWorld, job_world
from tests.chaos.processes import OperatorReplica
from tests.chaos.report import Report
from tests.chaos.webhook_probe import WebhookProbe, probe_objects
from tests.chaos.world import (
    ChaosRestServer,
    World,
    set_restic_bin,
    sidecar_world,
    storage_backend,
)
from tests.integration.agent.conftest import agent_rbac  # noqa: F401
from tests.integration.conftest import rest_server_bin, restic_bin  # noqa: F401
from tests.integration.operator.conftest import rawkube  # noqa: F401
from tests.support.storage import MotoServer, StorageUnavailable
from tests.support.webhook import wait_until_active

#: Faulted runs when STASH_CHAOS_INJECTIONS is unset (the bounded form in `make test`).
BOUNDED_INJECTIONS = 4
BOUNDED_OPERATOR_ROUNDS = 3
#: Seconds: the operators' default session deadline (no invoker sets timeOut).
SESSION_TIMEOUT = 75.0


def planned_injections() -> int:
    """How many faulted runs this test run makes."""
    return int(os.environ.get("STASH_CHAOS_INJECTIONS") or BOUNDED_INJECTIONS)


def operator_rounds() -> int:
    """How many operator kill rounds run under the webhook probe."""
    default = BOUNDED_OPERATOR_ROUNDS if planned_injections() <= 10 else 20
    return int(os.environ.get("STASH_CHAOS_OPERATOR_ROUNDS") or default)


def chaos_seed() -> int:
    """The seed of this run (STASH_CHAOS_SEED, else a fresh one)."""
    given = os.environ.get("STASH_CHAOS_SEED")
    return int(given) if given else random.SystemRandom().randrange(1, 2**31)


@dataclass
class ChaosSetup:
    """What a chaos test drives."""

    cluster: Cluster
    worlds: list[World]
    probe: WebhookProbe
    report: Report


def _operator_env(namespace: str) -> dict[str, str]:
    return {
        "STASH_LEASE_DURATION": "4",
        "STASH_RENEW_DEADLINE": "3",
        "STASH_RETRY_PERIOD": "0.5",
        "STASH_EXECUTOR_HEARTBEAT_TIMEOUT": "8",
        "STASH_EXECUTOR_START_TIMEOUT": "40",
        "STASH_DEFAULT_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
        "STASH_WEBHOOK_CONFIG_NAME": f"chaos-{namespace}",
        "STASH_WEBHOOK_TIMEOUT_SECONDS": "3",
        "STASH_WEBHOOK_RECHECK_INTERVAL": "2",
        # A restic check in every session (upstream's behaviour): the invariant "a corrupt
        # pack is never reported sound" is about what a check finds; with the default
        # daily schedule the session after a corruption carries the last check's result
        # (RepositoryIntegrityCheckNotDue, docs/compatibility.md) by design.
        "STASH_INTEGRITY_CHECK_INTERVAL": "0",
    }


@pytest.fixture
async def chaos(
    control_plane: ControlPlane,
    stash_crds: list[str],
    rawkube: Kube,  # noqa: F811
    namespace: str,
    agent_rbac: None,  # noqa: F811
    restic_bin: str,  # noqa: F811
    rest_server_bin: str,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[ChaosSetup]:
    """Operators, storage, agents and worlds, torn down whatever happened."""
    set_restic_bin(restic_bin)
    seed = chaos_seed()
    print(f"\nchaos seed: {seed} (replay with STASH_CHAOS_SEED={seed})")
    lease_ns = f"{namespace[:50]}-op"
    await rawkube.create(NAMESPACES, {"metadata": {"name": lease_ns}})
    logs = tmp_path / "logs"
    logs.mkdir()
    rest = ChaosRestServer(rest_server_bin, tmp_path / "rest-data", logs / "rest-server.log")
    moto = MotoServer(logs / "moto.log")
    replicas = [
        OperatorReplica(
            n, control_plane.kubeconfig, namespace, lease_ns, logs, _operator_env(namespace)
        )
        for n in ("a", "b")
    ]
    runner = PodRunner(rawkube, tmp_path / "pods")
    worlds: list[World] = []
    probe = WebhookProbe(rawkube, namespace)
    cluster = Cluster(
        kube=rawkube,
        control_plane=control_plane,
        namespace=namespace,
        lease_namespace=lease_ns,
        webhook_config=f"chaos-{namespace}",
        replicas=replicas,
        rest=rest,
        moto=moto,
        rng=random.Random(seed),
    )
    try:
        for server in (rest, moto):
            try:
                server.start()
            except StorageUnavailable as exc:
                pytest.fail(f"{server.name} could not start: {exc}", pytrace=False)
        await cluster.replicas_ready()
        await wait_until_active(rawkube, namespace, timeout=60)
        for key, storage in (("rest", "rest"), ("s3", "s3")):
            backend = storage_backend(storage, rest, moto, f"{key}-{namespace[-6:]}")
            worlds.append(
                await sidecar_world(rawkube, namespace, key, storage, backend, runner, tmp_path)
            )
        backend = storage_backend("rest", rest, moto, f"job-{namespace[-6:]}")
        worlds.append(await job_world(rawkube, namespace, "job", backend, runner, tmp_path))
        for res, body in probe_objects("repo-rest"):
            await rawkube.create(res, body, namespace)  # type: ignore[arg-type]
        yield ChaosSetup(cluster, worlds, probe, Report(seed=seed, planned=planned_injections()))
    finally:
        await probe.stop()
        for w in worlds:
            if isinstance(w, JobWorld) and w.pods is not None:
                await w.pods.stop()
        for r in replicas:
            r.stop()
        for res in (MUTATING, VALIDATING):
            with contextlib.suppress(NotFound):
                await rawkube.delete(res, f"chaos-{namespace}")
        await runner.close()
        if moto.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(moto.proc.pid, 18)  # SIGCONT: a frozen server cannot stop
        rest.stop()
        moto.stop()
        with contextlib.suppress(NotFound):
            await rawkube.delete(NAMESPACES, lease_ns)
