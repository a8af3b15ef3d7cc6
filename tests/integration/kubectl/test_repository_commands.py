"""`kubectl stash snapshots | download | delete snapshot | key | unlock | check` through the
real kubectl, against a Repository on a real REST server."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time
from pathlib import Path

import pytest

from stash.kube.client import Kube
from stash.kube.resources import SECRETS
from stash.restic import Restic
from tests.integration.conftest import MakeRestic
from tests.integration.kubectl.conftest import Kubectl, World

pytestmark = pytest.mark.cluster


async def test_snapshots_download_byte_for_byte_and_delete(
    kubectl: Kubectl, repo_world: World, namespace: str, tmp_path: Path
) -> None:
    [snap] = await repo_world.restic.snapshots()
    listed = await kubectl.stash(namespace, "snapshots", "repo", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    [item] = json.loads(listed.stdout)["items"]
    assert item["metadata"]["name"] == f"repo-{snap.id[:8]}"
    assert item["metadata"]["uid"] == snap.id
    assert item["status"]["hostname"] == "web-0"
    assert item["status"]["paths"] == [str(repo_world.data)]
    table = await kubectl.stash(namespace, "snapshots", "repo")
    assert table.returncode == 0 and f"repo-{snap.id[:8]}" in table.stdout

    dest = tmp_path / "downloaded"
    done = await kubectl.stash(namespace, "download", "repo", f"--destination={dest}")
    assert done.returncode == 0, done.stderr
    assert "restored " in done.stderr and "from latest" in done.stderr  # the progress line
    got = dest / repo_world.data.relative_to("/")
    for rel in ("a.txt", "sub/b.bin"):
        assert (got / rel).read_bytes() == (repo_world.data / rel).read_bytes()

    # two snapshots: each into <destination>/<id8>
    (repo_world.data / "a.txt").write_text("changed\n")
    second = (await repo_world.restic.backup([str(repo_world.data)], host="web-0")).snapshot_id
    assert second is not None
    both = tmp_path / "both"
    done = await kubectl.stash(
        namespace, "download", "repo", f"--destination={both}", f"--snapshots={snap.id},{second}"
    )
    assert done.returncode == 0, done.stderr
    rel = repo_world.data.relative_to("/") / "a.txt"
    assert (both / snap.id[:8] / rel).read_text() == "alpha\n"
    assert (both / second[:8] / rel).read_text() == "changed\n"
    await repo_world.restic.forget_snapshots([second], prune=False)

    dry = await kubectl.stash(namespace, "delete", "snapshot", f"repo-{snap.id[:8]}", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [s.id for s in await repo_world.restic.snapshots()] == [snap.id]
    gone = await kubectl.stash(namespace, "delete", "snapshot", f"repo-{snap.id[:8]}")
    assert gone.returncode == 0, gone.stderr
    assert await repo_world.restic.snapshots() == []
    again = await kubectl.stash(namespace, "delete", "snapshot", f"repo-{snap.id[:8]}")
    assert again.returncode == 1 and "no snapshot" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


async def test_a_key_added_opens_the_repository_and_can_be_removed(
    kubectl: Kubectl,
    repo_world: World,
    namespace: str,
    tmp_path: Path,
    make_restic: MakeRestic,
    rawkube: Kube,
) -> None:
    secret_file = tmp_path / "new-password"
    secret_file.write_text("a second password\n")
    added = await kubectl.stash(
        namespace, "key", "add", "repo", f"--new-password-file={secret_file}", "--user=ops"
    )
    assert added.returncode == 0, added.stderr
    other = make_restic(repo_world.storage, password="a second password")
    assert len(await other.snapshots()) == 1  # the new key opens the repository

    listed = await kubectl.stash(namespace, "key", "list", "repo", "-o", "json")
    keys = json.loads(listed.stdout)
    assert len(keys) == 2
    [current] = [k for k in keys if k["current"]]
    [new] = [k for k in keys if not k["current"]]
    assert new["userName"] == "ops"
    refused = await kubectl.stash(namespace, "key", "remove", "repo", current["id"][:8])
    assert refused.returncode == 1 and "key update" in refused.stderr
    removed = await kubectl.stash(namespace, "key", "remove", "repo", new["id"][:8])
    assert removed.returncode == 0, removed.stderr
    assert [k.id for k in await repo_world.restic.keys()] == [current["id"]]

    # update: a new key, the Secret's password changed, the old key gone; still usable.
    third = tmp_path / "third"
    third.write_text("the third password")
    updated = await kubectl.stash(
        namespace, "key", "update", "repo", f"--new-password-file={third}"
    )
    assert updated.returncode == 0, updated.stderr
    secret = await rawkube.get(SECRETS, "repo-creds", namespace)
    assert base64.b64decode(secret["data"]["RESTIC_PASSWORD"]) == b"the third password"
    [key] = await make_restic(repo_world.storage, password="the third password").keys()
    assert key.id != current["id"]
    listed = await kubectl.stash(namespace, "snapshots", "repo", "-o", "json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)["items"]) == 1


async def _wait_for_locks(restic: Restic, count: int) -> list[str]:
    deadline = time.monotonic() + 60
    while len(ids := await restic.lock_ids()) < count:
        assert time.monotonic() < deadline, f"expected {count} lock(s), have {ids}"
        await asyncio.sleep(0.2)
    return ids


async def test_unlock_removes_a_stale_lock_and_refuses_a_live_one(
    kubectl: Kubectl, repo_world: World, namespace: str, restic_bin: str
) -> None:
    restic = repo_world.restic
    env = {**os.environ, **restic.target.env}
    argv = [restic_bin, *restic.target.options, "--no-cache", "backup"]
    argv += ["--stdin-from-command", "--stdin-filename", "x", "--", "sleep", "120"]
    doomed = await asyncio.create_subprocess_exec(
        *argv, env=env, start_new_session=True, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        [stale] = await _wait_for_locks(restic, 1)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        await doomed.wait()
    live_task = asyncio.create_task(restic.backup_command(["sleep", "120"], filename="y"))
    try:
        [live] = [i for i in await _wait_for_locks(restic, 2) if i != stale]
        # Both are younger than a live lock's refresh interval: neither is stale yet.
        young = await kubectl.stash(namespace, "unlock", "repo")
        assert young.returncode == 1 and "--remove-all" in young.stderr
        assert sorted(await restic.lock_ids()) == sorted([stale, live])
        # Any age: the dead restic's lock goes, the running one's is refused.
        done = await kubectl.stash(namespace, "unlock", "repo", "--min-age=0s")
        assert done.returncode == 1
        assert f"removed stale lock {stale[:8]}" in done.stdout
        assert f"live lock(s) {live[:8]}" in done.stderr
        assert await restic.lock_ids() == [live]
    finally:
        live_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await live_task
    clean = await kubectl.stash(namespace, "unlock", "repo")
    assert clean.returncode == 0 and "has no locks" in clean.stdout


async def test_check_and_clear_errors(kubectl: Kubectl, repo_world: World, namespace: str) -> None:
    ok = await kubectl.stash(namespace, "check", "repo")
    assert ok.returncode == 0 and "no errors" in ok.stdout, ok.stderr
    missing = await kubectl.stash(namespace, "check", "nope")
    assert missing.returncode == 1 and 'no Repository "nope"' in missing.stderr
    bad = await kubectl.stash(namespace, "delete", "snapshot", "repo-xyz")
    assert bad.returncode == 1 and "<repository>-<first 8" in bad.stderr
    for done in (missing, bad):
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
