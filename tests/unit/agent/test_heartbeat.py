"""The heartbeat stops when asked, also when restic has just started or ended (its
PID publication wakes the renew loop at the same moment as the stop)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stash.agent.leases import HEARTBEAT_RESTIC_PIDS, Heartbeat
from stash.kube.client import NotFound
from stash.restic.ledger import RunLedger


class _Leases:
    """A stand-in for the API: one Lease per name (unit test only)."""

    def __init__(self) -> None:
        self.stored: dict[str, Any] = {}

    async def get(self, _res: Any, name: str, _ns: str | None = None) -> Any:
        if name not in self.stored:
            raise NotFound(404, "NotFound", "not found")
        return self.stored[name]

    async def create(self, _res: Any, body: Any, _ns: str | None = None) -> Any:
        self.stored[body["metadata"]["name"]] = body
        return body

    async def replace(self, _res: Any, body: Any, _ns: str | None = None) -> Any:
        self.stored[body["metadata"]["name"]] = body
        return body


SESSION = {"metadata": {"name": "s-1", "namespace": "demo", "uid": "u"}}


async def test_stop_right_after_restic_ends_returns(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path / "runs.json")
    kube = _Leases()
    for _ in range(20):
        beat = Heartbeat(kube, SESSION, "host-0", "pod-a", ledger=ledger)  # type: ignore[arg-type]
        await beat.start()
        ledger.started(4242)
        await asyncio.sleep(0)
        ledger.ended(4242)  # wakes the renew loop ...
        stopping = asyncio.create_task(beat.stop(delete=False))  # ... as the stop cancels it
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done, "the heartbeat did not stop (its cancellation was lost)"


async def test_restic_pids_are_published_at_once(tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path / "runs.json")
    kube = _Leases()
    beat = Heartbeat(kube, SESSION, "host-0", "pod-a", ledger=ledger, renew_every=60)  # type: ignore[arg-type]
    await beat.start()
    ledger.started(31)

    async def published() -> None:
        while True:
            lease = next(iter(kube.stored.values()))
            if lease["metadata"]["annotations"].get(HEARTBEAT_RESTIC_PIDS) == "31":
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(published(), 5)  # long before the 60 s renewal
    await beat.stop(delete=False)
