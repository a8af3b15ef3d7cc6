"""The informer's loop: 410 Gone and errors lead to a fresh list, and the cache and
handlers end up matching the server. Uses an in-memory stand-in for the apiserver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from stash.kube.client import JSON, Gone, KubeError, Resource
from stash.kube.informer import Informer

RES = Resource("", "v1", "configmaps", "ConfigMap")


def _obj(name: str, rv: str) -> JSON:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": rv,
            "managedFields": [{"big": "x" * 100}],
        }
    }


class FakeServer:
    """Lists return `objects`; each watch call pops the next scripted behaviour."""

    def __init__(self) -> None:
        self.objects: dict[str, JSON] = {}
        self.rv = 10
        self.watches: list[Any] = []
        self.list_calls = 0

    async def list_all(self, res: Resource, ns: str | None, **kw: Any) -> tuple[list[JSON], str]:
        self.list_calls += 1
        return list(self.objects.values()), str(self.rv)

    async def watch(self, res: Resource, ns: str | None, **kw: Any) -> AsyncIterator[JSON]:
        step = self.watches.pop(0) if self.watches else "block"
        if step == "block":
            await asyncio.sleep(3600)
        if isinstance(step, tuple):  # (event to wait for, then the exception)
            await step[0].wait()
            step = step[1]
        if isinstance(step, Exception):
            raise step
        for ev in step:
            yield ev


async def test_gone_relists_and_reports_what_changed_meanwhile() -> None:
    server = FakeServer()
    server.objects = {"a": _obj("a", "1"), "b": _obj("b", "2")}
    changed = asyncio.Event()
    server.watches = [(changed, Gone(410, "Expired", "too old"))]
    failed: list[Resource] = []
    inf = Informer(server, RES, resync_period=0, on_failure=failed.append)  # type: ignore[arg-type]
    seen: list[tuple[str, str]] = []
    inf.add_handler(lambda k, o, old: seen.append((k, o["metadata"]["name"])))
    task = asyncio.create_task(inf.run())
    await asyncio.wait_for(inf.synced.wait(), 1)
    # While the watch is "gone", b is deleted and c created on the server.
    server.objects = {"a": _obj("a", "1"), "c": _obj("c", "5")}
    changed.set()
    for _ in range(100):
        if server.list_calls >= 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    task.cancel()
    assert server.list_calls == 2
    assert sorted(o["metadata"]["name"] for o in inf.list()) == ["a", "c"]
    assert ("DELETED", "b") in seen and ("ADDED", "c") in seen
    assert seen.count(("ADDED", "a")) == 1, "an unchanged object is not re-announced"
    assert "managedFields" not in inf.get("ns/a")["metadata"]  # type: ignore[index]
    assert failed == [], "an expired resourceVersion is no failure"


async def test_watch_events_update_cache_and_errors_back_off_then_relist() -> None:
    server = FakeServer()
    server.watches = [
        [
            {"type": "ADDED", "object": _obj("x", "11")},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
            {"type": "MODIFIED", "object": _obj("x", "13")},
        ],
        KubeError(500, "InternalError", "boom"),
    ]
    failed: list[str] = []
    inf = Informer(
        server,  # type: ignore[arg-type]
        RES,
        resync_period=0,
        max_backoff=0.01,
        on_failure=lambda res: failed.append(res.plural),
    )
    task = asyncio.create_task(inf.run())
    for _ in range(200):
        if server.list_calls >= 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert server.list_calls == 2, "an error is followed by a fresh list"
    assert inf.restarts >= 2
    assert failed == ["configmaps"], "the watch that simply ended is no failure"
