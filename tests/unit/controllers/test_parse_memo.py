"""`ControllerContext.parse` parses a cached object once per resourceVersion, keeps only
the latest version of each object and at most `PARSED_KEEP` objects (the most recently
read), and drops a deleted object's copy at once, so the operator's memory grows neither
with every status write it sees nor with every session a schedule makes."""

from __future__ import annotations

import gc
import weakref
from typing import Any, cast

import pytest

from stash.api import BackupSession, Repository
from stash.controllers import context
from stash.controllers.context import Caches, ControllerContext
from stash.kube.client import JSON, Kube
from stash.kube.events import EventRecorder
from stash.kube.informer import Handler
from stash.scheduler import CronEngine
from stash.settings import OperatorSettings


def _ctx() -> ControllerContext:
    return ControllerContext(
        kube=cast(Kube, None),
        caches=cast(Caches, None),
        recorder=cast(EventRecorder, None),
        engine=cast(CronEngine, None),
        settings=cast(OperatorSettings, None),
    )


def _repo(name: str, rv: str, secret: str = "s") -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
        "spec": {"backend": {"storageSecretName": secret, "local": {"mountPath": "/b"}}},
    }


def test_one_version_is_parsed_once_and_a_new_version_again() -> None:
    ctx = _ctx()
    first = ctx.parse(Repository, _repo("r", "1"))
    assert ctx.parse(Repository, _repo("r", "1")) is first
    second = ctx.parse(Repository, _repo("r", "2", secret="other"))
    assert second is not first
    assert second.spec is not None and second.spec.backend is not None
    assert second.spec.backend.storage_secret_name == "other"
    assert ctx.parse(Repository, _repo("r", "2", secret="other")) is second


def test_only_the_most_recently_read_objects_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "PARSED_KEEP", 2)
    ctx = _ctx()
    a = ctx.parse(Repository, _repo("a", "1"))
    b = ctx.parse(Repository, _repo("b", "1"))
    assert ctx.parse(Repository, _repo("a", "1")) is a  # a is now the most recent
    ctx.parse(Repository, _repo("c", "1"))  # b goes
    assert ctx.parse(Repository, _repo("a", "1")) is a
    assert ctx.parse(Repository, _repo("b", "1")) is not b


class _Informer:
    """What `forget_deleted` needs of an informer: somewhere to add a handler."""

    def __init__(self) -> None:
        self.handlers: list[Handler] = []

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def event(self, kind: str, obj: JSON) -> None:
        for handler in self.handlers:
            handler(kind, obj, None)


def _session(name: str) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7"},
        "spec": {"invoker": {"kind": "BackupConfiguration", "name": "bc"}},
    }


def test_a_deleted_session_is_no_longer_held() -> None:
    informers: dict[str, Any] = {
        name: _Informer()
        for name in ("backupsessions", "restoresessions", "backupconfigurations", "repositories")
    }
    ctx = _ctx()
    ctx.caches = cast(
        Caches,
        type(
            "FakeCaches",
            (),
            {**dict.fromkeys(("backupbatches", "restorebatches", "backupblueprints")), **informers},
        )(),
    )
    ctx.forget_deleted()
    kept = ctx.parse(BackupSession, _session("bc-1"))
    gone = weakref.ref(ctx.parse(BackupSession, _session("bc-2")))
    informers["backupsessions"].event("MODIFIED", _session("bc-1"))
    informers["backupsessions"].event("DELETED", _session("bc-2"))
    gc.collect()
    assert gone() is None
    assert ctx.parse(BackupSession, _session("bc-1")) is kept
