"""Server-side apply against the real apiserver: create or update in one call, fields
owned per manager, conflicts with other writers refused unless forced."""

from __future__ import annotations

import pytest

from stash.kube.client import Conflict, Kube, Resource

pytestmark = pytest.mark.cluster

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")


def _cm(ns: str, **data: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "applied", "namespace": ns},
        "data": data,
    }


async def test_apply_creates_updates_and_drops_what_it_no_longer_applies(
    rawkube: Kube, namespace: str
) -> None:
    created = await rawkube.apply(CONFIGMAPS, _cm(namespace, a="1", b="2"), field_manager="t")
    assert created["data"] == {"a": "1", "b": "2"}
    updated = await rawkube.apply(CONFIGMAPS, _cm(namespace, a="3"), field_manager="t")
    assert updated["data"] == {"a": "3"}, "a field the manager stopped applying is removed"
    live = await rawkube.get(CONFIGMAPS, "applied", namespace)
    assert live["data"] == {"a": "3"}
    managers = {m["manager"] for m in live["metadata"]["managedFields"]}
    assert managers == {"t"}


async def test_another_writers_change_conflicts_unless_forced(
    rawkube: Kube, namespace: str
) -> None:
    await rawkube.apply(CONFIGMAPS, _cm(namespace, a="1"), field_manager="ours")
    await rawkube.patch(CONFIGMAPS, "applied", {"data": {"a": "edited", "c": "x"}}, namespace)

    with pytest.raises(Conflict):
        await rawkube.apply(CONFIGMAPS, _cm(namespace, a="1", b="new"), field_manager="ours")
    live = await rawkube.get(CONFIGMAPS, "applied", namespace)
    assert live["data"] == {"a": "edited", "c": "x"}, "a refused apply writes nothing"

    forced = await rawkube.apply(
        CONFIGMAPS, _cm(namespace, a="1", b="new"), field_manager="ours", force=True
    )
    assert forced["data"] == {"a": "1", "b": "new", "c": "x"}, "fields of others are kept"


async def test_applying_a_namespaced_kind_without_a_namespace_is_refused(rawkube: Kube) -> None:
    body = _cm("x")
    body["metadata"] = {"name": "applied"}
    with pytest.raises(ValueError, match="namespace"):
        await rawkube.apply(CONFIGMAPS, body, field_manager="t")
