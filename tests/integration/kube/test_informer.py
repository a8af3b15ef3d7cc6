"""The informer's cache follows the apiserver: changes, indexes, 410 re-list, restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from stash.kube.client import JSON, Gone, Kube, Resource
from stash.kube.informer import Informer
from stash_dev import ControlPlane
from tests.support.cluster import etcd_compact, eventually

pytestmark = pytest.mark.cluster

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")


def _cm(name: str, team: str, value: str = "1") -> JSON:
    return {"metadata": {"name": name, "labels": {"team": team}}, "data": {"v": value}}


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 20)
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_cache_and_index_follow_changes(rawkube: Kube, namespace: str) -> None:
    await rawkube.create(CONFIGMAPS, _cm("before", "red"), namespace)
    inf = Informer(rawkube, CONFIGMAPS, namespace=namespace, resync_period=0)
    inf.add_index("team", lambda o: [o["metadata"].get("labels", {}).get("team", "")])
    events: list[tuple[str, str]] = []
    inf.add_handler(lambda kind, obj, old: events.append((kind, obj["metadata"]["name"])))
    async with running(inf):
        assert inf.get(f"{namespace}/before") is not None
        await rawkube.create(CONFIGMAPS, _cm("a", "red"), namespace)
        await rawkube.create(CONFIGMAPS, _cm("b", "blue"), namespace)
        await rawkube.patch(CONFIGMAPS, "a", {"metadata": {"labels": {"team": "blue"}}}, namespace)
        await rawkube.delete(CONFIGMAPS, "before", namespace)

        async def settled() -> bool:
            blue = sorted(o["metadata"]["name"] for o in inf.by_index("team", "blue"))
            return blue == ["a", "b"] and inf.get(f"{namespace}/before") is None

        await eventually(settled, timeout=10, what="cache to reflect the changes")
        assert inf.by_index("team", "red") == []
        assert ("DELETED", "before") in events
        assert [e for e in events if e[1] == "a"] == [("ADDED", "a"), ("MODIFIED", "a")]


@pytest.mark.serial  # it compacts etcd under every watcher
async def test_watch_from_compacted_resource_version_raises_gone(
    rawkube: Kube, control_plane: ControlPlane, namespace: str
) -> None:
    # What an informer meets after a long disconnect: its resourceVersion was compacted.
    await asyncio.to_thread(etcd_compact, control_plane.etcd_url)
    with pytest.raises(Gone):
        # configmaps bypass the watch cache in the test cluster (see ControlPlane), so
        # this reaches etcd's compaction as a production watch cache miss would.
        async for _ in rawkube.watch(
            CONFIGMAPS, namespace, resource_version="1", timeout_seconds=2
        ):
            pass


@pytest.mark.serial  # it restarts the apiserver
async def test_watch_resumes_after_apiserver_restart(
    rawkube: Kube, control_plane: ControlPlane, namespace: str
) -> None:
    inf = Informer(rawkube, CONFIGMAPS, namespace=namespace, resync_period=0)
    added: list[str] = []
    inf.add_handler(
        lambda kind, obj, old: added.append(obj["metadata"]["name"]) if kind == "ADDED" else None
    )
    async with running(inf):
        await rawkube.create(CONFIGMAPS, _cm("one", "x"), namespace)
        await eventually(lambda: _async("one" in added), timeout=10, what="first object")
        await asyncio.to_thread(control_plane.restart_apiserver)
        await rawkube.create(CONFIGMAPS, _cm("two", "x"), namespace)
        await eventually(lambda: _async("two" in added), timeout=60, what="object after restart")
        assert added.count("one") == 1, "an object must not be reported as added twice"


async def _async(value: bool) -> bool:
    return value
