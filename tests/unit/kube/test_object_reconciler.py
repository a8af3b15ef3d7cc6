"""The object-reconciler adapter: key -> cached object -> finalizer, deletion, parse, step."""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, ValidationError

from stash.kube.client import JSON, Kube, Resource
from stash.kube.controller import DONE, ObjectHooks, Result, as_reconciler
from stash.kube.informer import Informer

WIDGETS = Resource("example.com", "v1", "widgets", "Widget")


class Widget(BaseModel):
    metadata: dict[str, Any]
    size: int


class _Cache:
    def __init__(self, *objs: JSON) -> None:
        self.objs = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in objs}

    def get(self, key: str) -> JSON | None:
        return self.objs.get(key)


class _Kube:
    """Answers merge patches of metadata like an apiserver (a new resourceVersion)."""

    def __init__(self) -> None:
        self.patches: list[JSON] = []

    async def patch(self, res: Resource, name: str, patch: JSON, ns: str | None = None) -> JSON:
        self.patches.append(patch)
        meta = {"name": name, "namespace": ns, **patch["metadata"], "resourceVersion": "2"}
        return {"metadata": meta, "size": 3}


class _Widgets:
    name = "widget"
    model = Widget

    def __init__(self, finalizer: str | None = "example.com") -> None:
        self.seen: list[tuple[str, object]] = []
        self.hooks = ObjectHooks[Widget](
            finalizer=finalizer, gone=self._gone, finalize=self._finalize, invalid=self._invalid
        )

    async def reconcile(self, obj: Widget, raw: JSON) -> Result:
        self.seen.append(("reconcile", (obj.size, raw["metadata"].get("finalizers"))))
        return Result(requeue_after=1.0)

    async def _gone(self, key: str) -> None:
        self.seen.append(("gone", key))

    async def _finalize(self, raw: JSON, obj: Widget | None) -> None:
        self.seen.append(("finalize", obj.size if obj else None))

    async def _invalid(self, raw: JSON, error: ValidationError) -> Result:
        self.seen.append(("invalid", error.error_count()))
        return DONE


def _widget(**meta: Any) -> JSON:
    return {"metadata": {"name": "w", "namespace": "d", "resourceVersion": "1", **meta}, "size": 3}


def _adapter(rec: _Widgets, *objs: JSON, kube: _Kube | None = None) -> Any:
    return as_reconciler(rec, cast(Informer, _Cache(*objs)), cast(Kube, kube or _Kube()), WIDGETS)


async def test_a_live_object_gets_the_finalizer_then_the_typed_step() -> None:
    rec, kube = _Widgets(), _Kube()
    result = await _adapter(rec, _widget(), kube=kube).reconcile("d/w")
    assert result == Result(requeue_after=1.0)
    assert kube.patches == [{"metadata": {"finalizers": ["example.com"], "resourceVersion": "1"}}]
    assert rec.seen == [("reconcile", (3, ["example.com"]))]


async def test_a_deleted_object_is_finalized_then_let_go() -> None:
    rec, kube = _Widgets(), _Kube()
    obj = _widget(deletionTimestamp="2026-01-01T00:00:00Z", finalizers=["example.com", "other"])
    assert await _adapter(rec, obj, kube=kube).reconcile("d/w") == DONE
    assert rec.seen == [("finalize", 3)]
    assert kube.patches == [{"metadata": {"finalizers": ["other"], "resourceVersion": "1"}}]


async def test_gone_and_unparseable_objects_go_to_their_hooks() -> None:
    rec = _Widgets(finalizer=None)
    assert await _adapter(rec).reconcile("d/w") == DONE
    bad = {**_widget(), "size": "big"}
    assert await _adapter(rec, bad).reconcile("d/w") == DONE
    assert rec.seen == [("gone", "d/w"), ("invalid", 1)]
