"""Whether another executor still backs up a host is judged by seeing its heartbeat
change on our own clock, never by comparing its node's timestamps with our clock."""

from __future__ import annotations

from typing import Any

from stash.agent.leases import Heartbeat
from stash.kube.client import JSON, NotFound, Resource

SESSION = {"metadata": {"name": "bc-1", "namespace": "ns", "uid": "u"}}


class FakeLeases:
    """A heartbeat Lease held by `other`, whose renewTime is `stamps[i]` on read i."""

    def __init__(self, stamps: list[str] | None) -> None:
        self.stamps = stamps
        self.reads = 0

    async def get(self, res: Resource, name: str, ns: str | None = None) -> JSON:
        if self.stamps is None:
            raise NotFound(404, "NotFound", "gone")
        stamp = self.stamps[min(self.reads, len(self.stamps) - 1)]
        self.reads += 1
        return {"metadata": {"name": name}, "spec": {"holderIdentity": "other", "renewTime": stamp}}


def heartbeat(leases: Any) -> Heartbeat:
    return Heartbeat(leases, SESSION, "host-0", "me")


async def test_a_renewing_holder_whose_node_clock_is_a_year_behind_is_alive() -> None:
    leases = FakeLeases([f"2001-01-01T00:00:0{i}.000000Z" for i in range(10)])
    assert await heartbeat(leases).holder_elsewhere(poll=0.01, watch=0.5) == "other"


async def test_a_silent_holder_whose_node_clock_is_ahead_may_be_taken_over() -> None:
    leases = FakeLeases(["2999-01-01T00:00:00.000000Z"])  # "renewed" in the future, never again
    assert await heartbeat(leases).holder_elsewhere(poll=0.01, watch=0.1) is None
    assert leases.reads > 2


async def test_no_heartbeat_is_nobody_elsewhere() -> None:
    assert await heartbeat(FakeLeases(None)).holder_elsewhere(poll=0.01, watch=0.1) is None
