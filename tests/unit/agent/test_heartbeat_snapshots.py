"""A host's snapshots are recorded on its heartbeat as restic reports them, so an
executor that takes the heartbeat over (the sidecar restarted after a kill, a Job's
next pod) knows what the dead one already wrote and does not write it again."""

from __future__ import annotations

import copy
import json

from stash.agent.leases import Heartbeat
from stash.contract.sessions import HEARTBEAT_SNAPSHOTS, heartbeat_snapshots
from stash.kube.client import JSON, NotFound, Resource

SESSION = {"metadata": {"name": "bc-1", "namespace": "ns", "uid": "u"}}


class FakeLeases:
    """One namespace's Leases, by name."""

    def __init__(self) -> None:
        self.objects: dict[str, JSON] = {}

    async def get(self, res: Resource, name: str, ns: str | None = None) -> JSON:
        if name not in self.objects:
            raise NotFound(404, "NotFound", "gone")
        return copy.deepcopy(self.objects[name])

    async def create(self, res: Resource, body: JSON, ns: str | None = None) -> JSON:
        self.objects[body["metadata"]["name"]] = copy.deepcopy(body)
        return body

    async def replace(self, res: Resource, body: JSON, ns: str | None = None) -> JSON:
        self.objects[body["metadata"]["name"]] = copy.deepcopy(body)
        return body

    async def delete(self, res: Resource, name: str, ns: str | None = None) -> None:
        self.objects.pop(name, None)


def snapshot(name: str, path: str) -> JSON:
    return {"name": name, "path": path, "totalSize": "1 KiB"}


async def test_a_snapshot_is_on_the_lease_as_soon_as_it_is_recorded() -> None:
    leases = FakeLeases()
    beat = Heartbeat(leases, SESSION, "host-0", "pod-a", renew_every=3600)  # type: ignore[arg-type]
    await beat.start()
    await beat.record_snapshot(snapshot("0c40d02d", "/data"))
    (lease,) = leases.objects.values()
    assert heartbeat_snapshots(lease["metadata"]["annotations"]) == [snapshot("0c40d02d", "/data")]
    await beat.stop(delete=False)


async def test_the_executor_that_takes_over_inherits_what_the_dead_one_wrote() -> None:
    leases = FakeLeases()
    dead = Heartbeat(leases, SESSION, "host-0", "pod-a", renew_every=3600)  # type: ignore[arg-type]
    await dead.start()
    await dead.record_snapshot(snapshot("0c40d02d", "/data/app"))
    await dead.stop(delete=False)  # killed: its Lease stays

    successor = Heartbeat(leases, SESSION, "host-0", "pod-a-2", renew_every=3600)  # type: ignore[arg-type]
    await successor.start()
    assert successor.recorded() == [snapshot("0c40d02d", "/data/app")]
    await successor.record_snapshot(snapshot("9a1b2c3d", "/data/conf"))
    (lease,) = leases.objects.values()
    assert lease["spec"]["holderIdentity"] == "pod-a-2"
    paths = [e["path"] for e in heartbeat_snapshots(lease["metadata"]["annotations"])]
    assert sorted(paths) == ["/data/app", "/data/conf"]
    await successor.stop(delete=True)
    assert not leases.objects


def test_an_unreadable_annotation_records_nothing() -> None:
    for raw in ("not json", json.dumps({"name": "x"}), json.dumps([{"name": "x"}, 3])):
        assert heartbeat_snapshots({HEARTBEAT_SNAPSHOTS: raw}) == []
    assert heartbeat_snapshots(None) == []
