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


class CountingKube(SlowKube):
    """Records creates and repeats (count patches) at once."""

    def __init__(self) -> None:
        super().__init__()
        self.repeats: list[str] = []

    async def patch(self, res: Resource, name: str, body: JSON, *args: Any, **kw: Any) -> JSON:
        self.repeats.append(name)
        return body


async def test_repeats_count_within_ten_minutes_and_older_events_are_forgotten() -> None:
    now = [0.0]
    kube = CountingKube()
    recorder = EventRecorder(kube, "stash-operator", clock=lambda: now[0])  # type: ignore[arg-type]
    for i in range(100):  # a day of sessions, each with its own Event
        now[0] = i * 60.0
        await recorder.emit(_config(i), NORMAL, "SessionSucceeded", "done")
    await recorder.emit(_config(99), NORMAL, "SessionSucceeded", "done")
    assert len(kube.created) == 100 and len(kube.repeats) == 1, "a repeat counts up"
    assert len(recorder._recent) <= 11, "only the last ten minutes are remembered"
    now[0] += 601
    await recorder.emit(_config(99), NORMAL, "SessionSucceeded", "done")
    assert len(kube.created) == 101, "after the window a repeat is a new Event"
