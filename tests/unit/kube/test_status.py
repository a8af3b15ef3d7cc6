"""Status writes are guarded by the resourceVersion they were computed from: nothing is
sent when nothing changed, a conflict brings a fresh read and another try, and the
informer's copy is never edited."""

from __future__ import annotations

import copy
from typing import Any

from stash.kube.client import JSON, Conflict, Resource
from stash.kube.status import merge_patch, update_status

WIDGETS = Resource("example.com", "v1", "widgets", "Widget")


class FakeKube:
    """Answers GET with `live`; a PUT conflicts while `conflicts` > 0 or when its
    resourceVersion is not the live one, else stores the status."""

    def __init__(self, live: JSON, conflicts: int = 0) -> None:
        self.live = live
        self.conflicts = conflicts
        self.sent: list[tuple[str, Any]] = []

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        self.sent.append(("GET", name))
        return copy.deepcopy(self.live)

    async def replace(
        self, res: Resource, obj: JSON, namespace: str | None = None, subresource: str | None = None
    ) -> JSON:
        assert subresource == "status"
        self.sent.append(("PUT", copy.deepcopy(obj)))
        rv = obj["metadata"]["resourceVersion"]
        if self.conflicts or rv != self.live["metadata"]["resourceVersion"]:
            self.conflicts = max(0, self.conflicts - 1)
            raise Conflict(409, "Conflict", "the object has been modified")
        self.live["status"] = copy.deepcopy(obj["status"])
        self.live["metadata"]["resourceVersion"] = str(int(rv) + 1)
        return copy.deepcopy(self.live)


def _widget(rv: str, status: JSON) -> JSON:
    return {"metadata": {"name": "w", "resourceVersion": rv}, "spec": {"a": 1}, "status": status}


def test_a_merge_patch_names_only_what_changed() -> None:
    old = {"phase": "Running", "gone": 1, "nested": {"keep": 1, "drop": 2}, "list": [1, 2]}
    new = {"phase": "Ready", "nested": {"keep": 1, "add": 3}, "list": [1, 2], "none": None}
    assert merge_patch(old, new) == {
        "phase": "Ready",
        "gone": None,
        "nested": {"drop": None, "add": 3},
    }
    assert merge_patch(old, copy.deepcopy(old)) == {}


async def test_the_status_is_written_with_the_cached_resource_version() -> None:
    cached = _widget("7", {"phase": "Pending", "conditions": [{"type": "A"}]})
    kube = FakeKube(copy.deepcopy(cached))
    before = copy.deepcopy(cached)

    def compute(obj: JSON) -> JSON:
        obj["status"]["phase"] = "Ready"  # a compute may edit the status it is given
        return dict(obj["status"])

    written = await update_status(kube, WIDGETS, "w", "ns", compute, current=cached)  # type: ignore[arg-type]
    assert [verb for verb, _ in kube.sent] == ["PUT"]
    put = kube.sent[0][1]
    assert put["metadata"]["resourceVersion"] == "7" and put["spec"] == {"a": 1}
    assert put["status"] == {"phase": "Ready", "conditions": [{"type": "A"}]}
    assert written is not None and written["status"]["phase"] == "Ready"
    assert cached == before, "the informer's copy is never edited"


async def test_nothing_is_sent_when_nothing_changed() -> None:
    cached = _widget("7", {"phase": "Ready"})
    kube = FakeKube(copy.deepcopy(cached))
    assert (
        await update_status(kube, WIDGETS, "w", "ns", lambda o: {"phase": "Ready"}, current=cached)
        is None
    )  # type: ignore[arg-type]
    assert await update_status(kube, WIDGETS, "w", "ns", lambda o: None, current=cached) is None  # type: ignore[arg-type]
    assert kube.sent == []


async def test_a_stale_copy_conflicts_and_the_live_object_is_read_again() -> None:
    live = _widget("9", {"phase": "Running", "hosts": 2})
    kube = FakeKube(live)
    stale = _widget("7", {"phase": "Pending"})
    written = await update_status(
        kube,  # type: ignore[arg-type]
        WIDGETS,
        "w",
        "ns",
        lambda o: {**o.get("status", {}), "phase": "Ready"},
        current=stale,
    )
    assert [verb for verb, _ in kube.sent] == ["PUT", "GET", "PUT"]
    assert kube.sent[-1][1]["metadata"]["resourceVersion"] == "9"
    assert written is not None and written["status"] == {"phase": "Ready", "hosts": 2}
