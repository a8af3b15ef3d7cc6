"""Events recorded in the background: the emitter does not wait, they are written in
the order emitted, and closing the recorder writes what still waits."""

from __future__ import annotations

import asyncio
from typing import Any

from stash.kube.client import JSON, Resource
from stash.kube.events import NORMAL, EventRecorder


class SlowKube:
    """Records Event creates; each takes a little while."""

    def __init__(self) -> None:
        self.created: list[JSON] = []

    async def create(self, res: Resource, obj: JSON, namespace: str | None = None) -> JSON:
        await asyncio.sleep(0.01)
        self.created.append(obj)
        return obj

    async def patch(self, *args: Any, **kw: Any) -> JSON:
        raise AssertionError("no repeats here")


def _config(i: int) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": f"bc-{i}", "namespace": "ns", "uid": f"u{i}", "spec": "not sent"},
    }


async def test_events_emitted_soon_are_written_in_order_and_flushed_on_close() -> None:
    kube = SlowKube()
    recorder = EventRecorder(kube, "stash-operator", "op-1")  # type: ignore[arg-type]
    for i in range(5):
        recorder.emit_soon(_config(i), NORMAL, "BackupConfigurationReady", f"phase -> Ready {i}")
    assert kube.created == [], "the emitter does not wait for the writes"
    await recorder.close()
    assert [e["involvedObject"]["name"] for e in kube.created] == [f"bc-{i}" for i in range(5)]
    first = kube.created[0]
    assert first["involvedObject"]["uid"] == "u0"
    assert first["involvedObject"]["kind"] == "BackupConfiguration"
    assert (first["reason"], first["message"]) == ("BackupConfigurationReady", "phase -> Ready 0")
