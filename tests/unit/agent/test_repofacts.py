"""What the post-backup actions know without running restic: the snapshot count after a
session, whether retention could remove anything, and the repository's size."""

from __future__ import annotations

from stash.agent.repofacts import nothing_to_forget, size_after_session, snapshots_after_session
from stash.agent.repository import RepositoryHandle
from stash.api import Repository
from stash.api.common import RetentionPolicy
from stash.api.repository import Backend
from stash.kube.client import JSON
from stash.restic import Restic, restic_target
from stash.restic.models import BackupSummary


def handle(status: JSON | None = None, *, added: tuple[int, ...] = ()) -> RepositoryHandle:
    backend = Backend.model_validate(
        {"storageSecretName": "s", "local": {"mountPath": "/repo", "hostPath": {"path": "/x"}}}
    )
    target = restic_target(backend, {"RESTIC_PASSWORD": b"pw"}, scratch_dir="/stash-tmp")
    restic = Restic(target)
    restic.backed_up = [BackupSummary(data_added_packed=n) for n in added]
    model = Repository.model_validate(
        {"metadata": {"name": "repo", "namespace": "ns"}, "status": status or {}}
    )
    return RepositoryHandle("repo", "ns", model, restic)


def session(*hosts: tuple[str, int]) -> JSON:
    stats = [{"hostname": h, "snapshots": [{"name": f"s{i}"} for i in range(n)]} for h, n in hosts]
    return {"status": {"targets": [{"stats": stats}]}}


def test_the_count_adds_this_sessions_snapshots_to_the_recorded_one() -> None:
    repo = handle({"snapshotCount": 4}, added=(10,))
    assert snapshots_after_session(repo, session(("host-1", 2)), "host-0", own=1) == 7
    assert snapshots_after_session(handle(), session(), "host-0", own=1) is None


def test_a_repository_created_in_this_session_starts_from_zero() -> None:
    repo = handle(added=(10, 20))
    repo.restic.created_repository = True
    assert snapshots_after_session(repo, session(), "host-0", own=2) == 2
    assert size_after_session(repo, session(), "host-0", own=2) == 30


def test_forget_is_left_out_only_when_keep_last_keeps_everything() -> None:
    keep5 = RetentionPolicy(name="p", keep_last=5, keep_daily=1)
    assert nothing_to_forget(keep5, 5, "host-0") is not None
    assert nothing_to_forget(keep5, 6, "host-0") is None
    assert nothing_to_forget(RetentionPolicy(name="p", keep_daily=30), 1, "host-0") is None
    assert nothing_to_forget(RetentionPolicy(name="p", keep_last=-1), 99, "host-0") is not None
    assert nothing_to_forget(keep5, None, "host-0") is None


def test_the_size_is_only_advanced_when_this_agent_wrote_every_snapshot() -> None:
    repo = handle({"totalSize": "1.000 MiB"}, added=(1024,))
    assert size_after_session(repo, session(), "host-0", own=1) == 1024 * 1024 + 1024
    assert size_after_session(repo, session(("host-1", 1)), "host-0", own=1) is None
    assert size_after_session(repo, session(), "host-0", own=2) is None  # an earlier executor's
    assert size_after_session(handle(added=(5,)), session(), "host-0", own=1) is None
