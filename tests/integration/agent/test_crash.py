"""The sidecar dies mid-backup (killed with its restic, as a container's processes die
with it): the operator fails the host once its heartbeat stops, and the next session
succeeds on its own — the dead backup's repository lock is cleared, not waited for."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.contract.sessions import heartbeat_snapshots
from stash.kube.client import JSON, Kube
from stash.kube.leader import LEASES
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash_dev.podrunner import PodRunner, RunningContainer
from tests.integration.agent.conftest import (
    backup_configuration,
    condition,
    create_objects,
    deployment,
    finished,
    host_restic,
    host_stats,
    injected_pods,
    local_repository,
    ready_invoker,
    secret,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (restic runs in its own session, not its group)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


async def _kill_container(handle: RunningContainer) -> None:
    """SIGKILL the container's main process and everything it started, at once: the
    agent first, so it cannot report its restic's death before it dies itself. The tree is
    stopped before it is killed, so no process in it can start another meanwhile (a restic
    started between the listing and the kill outlived it and wrote a snapshot no
    session names: CI-like run 21)."""
    os.kill(handle.pid, signal.SIGSTOP)
    below: list[int] = []
    while True:  # stop the tree until no new process appears in it
        found = [pid for pid in _descendants(handle.pid) if pid not in below]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        below += found
    handle.kill()
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    await handle.wait(30)


async def test_next_session_succeeds_after_the_sidecar_was_killed_mid_backup(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator(executor_heartbeat_timeout=6)
    repo_dir = tmp_path / "repo"
    # A slow upload (KiB/s) keeps the backup running long enough to kill it mid-way.
    bc = backup_configuration(restic_bin, args=["--limit-upload", "512"])
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(repo_dir)),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(rawkube, namespace)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"big.bin": os.urandom(5 * 1024 * 1024)})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})

    first = await trigger(rawkube, namespace)
    locks = repo_dir / "locks"

    async def backing_up() -> list[str] | None:
        # (restic writes a lock under a temporary name first, then renames it)
        found = sorted(p.name for p in locks.iterdir()) if locks.is_dir() else []
        return [name for name in found if "-tmp-" not in name] or None

    held = await eventually(backing_up, timeout=60, what="restic backup holding a lock")
    await _kill_container(sidecar)
    assert set(held) <= {p.name for p in locks.iterdir()}, "the dead backup's lock stays behind"

    failed = await finished(rawkube, namespace, first, timeout=60)
    assert failed["status"]["phase"] == "Failed", failed["status"]
    host = host_stats(failed)["host-0"]
    assert host["phase"] == "Failed" and "heartbeat" in host["error"]

    restarted = await runner.run(pod, "stash", volumes={"data": data})
    second = await trigger(rawkube, namespace)
    session = await finished(rawkube, namespace, second, timeout=120, logs=[restarted])
    assert session["status"]["phase"] == "Succeeded", (session["status"], restarted.logs())
    assert condition(session, "RetentionPolicyApplied")["status"] == "True"
    assert not set(held) & {p.name for p in locks.iterdir()}, "the stale lock was removed"
    assert "removed stale lock" in restarted.logs()

    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")
    (snapshot,) = await restic.snapshots()
    assert snapshot.short_id == host_stats(session)["host-0"]["snapshots"][0]["name"]


async def test_a_sidecar_restarted_mid_session_reuses_the_snapshot_its_dead_self_wrote(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    """Found by the chaos suite: a sidecar killed after restic wrote a snapshot but
    before the host's stats were written was restarted, backed the host up again, and
    left the first snapshot in the repository with no session naming it."""
    await run_operator(executor_heartbeat_timeout=60)  # the restart comes well before
    repo_dir = tmp_path / "repo"
    bc = backup_configuration(
        restic_bin, paths=["/data/small", "/data/big"], args=["--limit-upload", "512"]
    )
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(repo_dir)),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(rawkube, namespace)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"small/a.txt": b"a\n", "big/big.bin": os.urandom(5 * 1024 * 1024)})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    name = await trigger(rawkube, namespace)

    async def small_recorded() -> list[JSON] | None:
        leases = (await rawkube.list(LEASES, namespace))["items"]
        found = [
            e for lease in leases for e in heartbeat_snapshots(lease["metadata"].get("annotations"))
        ]
        return found or None

    (written,) = await eventually(
        small_recorded, timeout=60, what="/data/small's snapshot recorded"
    )
    assert written["path"] == "/data/small"
    await _kill_container(sidecar)  # mid-way through /data/big
    restarted = await runner.run(pod, "stash", volumes={"data": data})

    session = await finished(rawkube, namespace, name, timeout=180, logs=[restarted])
    assert session["status"]["phase"] == "Succeeded", (session["status"], restarted.logs())
    reported = {s["path"]: s["name"] for s in host_stats(session)["host-0"]["snapshots"]}
    assert reported["/data/small"] == written["name"]
    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")
    snapshots = await restic.snapshots()
    assert {s.short_id for s in snapshots} == set(reported.values()), (
        "every snapshot in the repository has its session",
        [(s.short_id, s.paths, s.time) for s in snapshots],
        sidecar.logs()[-3000:],
        restarted.logs()[-3000:],
    )
