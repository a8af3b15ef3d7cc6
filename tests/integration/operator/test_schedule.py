"""The cron engine against the real apiserver: a session within seconds of each minute
tick, none while paused, no catch-up burst on resume, exactly one per tick across a
leader's crash, and the operator survives an apiserver restart. (Pausing a running
schedule is the engine's same `register(paused=True)`: tests/unit/test_scheduler.py and
test_next_backup_time.py; this file starts paused to need one minute tick less.)"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS
from stash.kube.client import JSON, Kube, KubeError
from stash.kube.leader import LEASES
from stash_dev import ControlPlane
from tests.integration.operator.conftest import OperatorFactory, create_world
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _next_minute(after: dt.datetime) -> dt.datetime:
    return (after + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)


async def _sessions(kube: Kube, ns: str) -> list[JSON]:
    return list((await kube.list(BACKUPSESSIONS, ns))["items"])


async def _until(t: dt.datetime) -> None:
    await asyncio.sleep(max(0.0, (t - _now()).total_seconds()))


async def _ready(kube: Kube, ns: str) -> None:
    async def probe() -> bool:
        obj = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
        return (obj.get("status") or {}).get("phase") == "Ready"

    await eventually(probe, timeout=30, what="BackupConfiguration Ready")


def _created(obj: JSON) -> dt.datetime:
    return dt.datetime.fromisoformat(obj["metadata"]["creationTimestamp"].replace("Z", "+00:00"))


async def test_minute_ticks_pause_and_resume_without_burst(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    await run_operator()
    bc = await create_world(rawkube, namespace, schedule="*/1 * * * *", paused=True)
    await _ready(rawkube, namespace)
    tick1 = _next_minute(_now())
    await _until(tick1 + dt.timedelta(seconds=5))
    assert await _sessions(rawkube, namespace) == [], "no session while paused"

    await rawkube.patch(BACKUPCONFIGURATIONS, "bc", {"spec": {"paused": False}}, namespace)
    await asyncio.sleep(3)
    assert await _sessions(rawkube, namespace) == [], "resume must not catch up"
    tick2 = _next_minute(_now())
    await _until(tick2 + dt.timedelta(seconds=5))
    sessions = await _sessions(rawkube, namespace)
    assert [s["metadata"]["name"] for s in sessions] == [f"bc-{int(tick2.timestamp())}"]
    s = sessions[0]
    assert (_created(s) - tick2).total_seconds() <= 5, "session within 5 s of the tick"
    labels = s["metadata"]["labels"]
    assert labels["stash.appscode.com/invoker-name"] == "bc"
    assert labels["stash.appscode.com/invoker-type"] == "BackupConfiguration"
    owner = s["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "BackupConfiguration",
        "bc",
        bc["metadata"]["uid"],
        True,
    )


def _start_operator(cp: ControlPlane, ns: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        STASH_LEASE_DURATION="4",
        STASH_RENEW_DEADLINE="3",
        STASH_RETRY_PERIOD="0.5",
        STASH_METRICS_PORT="0",
        STASH_METRICS_HOST="127.0.0.1",
        STASH_SERVE_WEBHOOK="false",
        STASH_SERVE_SNAPSHOT_API="false",
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stash.cli.main",
            "operator",
            f"--kubeconfig={cp.kubeconfig}",
            f"--namespace={ns}",
            f"--operator-namespace={ns}",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


async def test_leader_crash_hands_over_without_losing_or_doubling_ticks(
    rawkube: Kube,
    control_plane: ControlPlane,
    stash_crds: list[str],
    namespace: str,
    tmp_path: Path,
) -> None:
    procs = [_start_operator(control_plane, namespace, tmp_path / f"op{i}.log") for i in range(2)]
    try:
        await create_world(rawkube, namespace, schedule="*/1 * * * *")
        await _ready(rawkube, namespace)

        async def holder() -> str | None:
            try:
                lease = await rawkube.get(LEASES, "stash-operator", namespace)
            except Exception:
                return None
            return (lease.get("spec") or {}).get("holderIdentity") or None

        leader = await eventually(holder, timeout=20, what="a leader")
        tick1 = _next_minute(_now())
        await _until(tick1 + dt.timedelta(seconds=5))
        # Crash the leader (no lease release): the standby must take over by itself.
        victim = next(p for p in procs if f"-{p.pid}-" in leader)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        new_leader = await eventually(
            lambda: _other_holder(holder, leader), timeout=15, what="the standby to take over"
        )
        assert new_leader != leader
        tick2 = _next_minute(_now())
        await _until(tick2 + dt.timedelta(seconds=5))
        names = sorted(s["metadata"]["name"] for s in await _sessions(rawkube, namespace))
        assert names == [f"bc-{int(tick1.timestamp())}", f"bc-{int(tick2.timestamp())}"]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                started = time.monotonic()
                p.wait(timeout=20)
                assert time.monotonic() - started < 5, "SIGTERM shuts the operator down quickly"
                assert p.returncode == 0
        for i in range(2):
            print((tmp_path / f"op{i}.log").read_text()[-3000:])


async def _other_holder(holder, leader: str) -> str | None:  # type: ignore[no-untyped-def]
    h = await holder()
    return h if h and h != leader else None


@pytest.mark.serial  # it restarts the apiserver
async def test_operator_survives_apiserver_restart(
    rawkube: Kube, control_plane: ControlPlane, run_operator: OperatorFactory, namespace: str
) -> None:
    op = await run_operator()
    await create_world(rawkube, namespace)
    await _ready(rawkube, namespace)
    await asyncio.to_thread(control_plane.restart_apiserver)
    # A change made after the restart is seen (watches resumed) and handled once.
    await rawkube.patch(BACKUPCONFIGURATIONS, "bc", {"spec": {"schedule": "0 3 * * *"}}, namespace)

    async def rescheduled() -> bool:
        try:
            obj = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
        except KubeError as exc:
            if exc.status != 429:
                raise
            return False
        conds = {c["type"]: c for c in obj["status"]["conditions"]}
        return "0 3 * * *" in conds["ScheduleRegistered"]["message"]

    await eventually(rescheduled, timeout=60, what="the new schedule registered after restart")
    assert op.engine.keys() == [f"BackupConfiguration/{namespace}/bc"]

    async def listed() -> list[JSON] | None:
        try:
            return [await _sessions(rawkube, namespace)]  # type: ignore[list-item]
        except KubeError as exc:  # 429 while the restarted apiserver re-initialises storage
            if exc.status != 429:
                raise
            return None

    assert await eventually(listed, timeout=30, what="listing sessions") == [[]]
