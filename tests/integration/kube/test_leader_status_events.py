"""Leader election hands over and stops work when the lease is lost; status writes
survive conflicts; repeated Events are counted, not duplicated."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import json
import logging

import pytest

from stash.kube.client import Kube, Resource
from stash.kube.events import EVENTS, WARNING, EventRecorder
from stash.kube.leader import LEASES, LeaderElector
from stash.kube.status import update_status
from stash.logs import JsonFormatter, KeyFilter, log_key
from tests.support.cluster import eventually

pytestmark = pytest.mark.cluster

CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
BACKUPSESSIONS = Resource("stash.appscode.com", "v1beta1", "backupsessions", "BackupSession")


def _elector(kube: Kube, ns: str, ident: str) -> LeaderElector:
    return LeaderElector(
        kube, ns, "stash-operator", ident, lease_duration=3, renew_deadline=2, retry_period=0.3
    )


async def test_exactly_one_leader_and_handover_on_shutdown(rawkube: Kube, namespace: str) -> None:
    leading: list[str] = []

    def work(ident: str):  # type: ignore[no-untyped-def]
        async def lead() -> None:
            leading.append(ident)
            try:
                await asyncio.sleep(3600)
            finally:
                leading.remove(ident)

        return lead

    a, b = _elector(rawkube, namespace, "a"), _elector(rawkube, namespace, "b")
    ta = asyncio.create_task(a.run(work("a")))
    await eventually(lambda: _v(leading == ["a"]), timeout=10, what="a leads")
    tb = asyncio.create_task(b.run(work("b")))
    await asyncio.sleep(1.5)
    assert leading == ["a"], "a standby must not lead while the lease is held"
    ta.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await ta
    # a released the lease on shutdown, so b takes over well within the lease duration.
    await eventually(lambda: _v(leading == ["b"]), timeout=3, what="b takes over")
    tb.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await tb


async def test_leader_stops_work_when_its_lease_is_taken(rawkube: Kube, namespace: str) -> None:
    stopped = asyncio.Event()

    async def lead() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    a = _elector(rawkube, namespace, "a")
    task = asyncio.create_task(a.run(lead))
    await eventually(lambda: _v(a.is_leader), timeout=10, what="a leads")
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # Another replica (or a partition) takes the lease; a can no longer renew.
    await rawkube.patch(
        LEASES,
        "stash-operator",
        {"spec": {"holderIdentity": "thief", "renewTime": now, "leaseDurationSeconds": 3600}},
        namespace,
    )
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(stopped.wait(), 5)
    assert asyncio.get_running_loop().time() - started < 3, "work stops within lease duration"
    assert not a.is_leader
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_status_update_retries_on_conflict(
    rawkube: Kube, stash_crds: list[str], namespace: str
) -> None:
    session = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": "s"},
        "spec": {
            "invoker": {
                "apiGroup": "stash.appscode.com",
                "kind": "BackupConfiguration",
                "name": "bc",
            }
        },
    }
    await rawkube.create(BACKUPSESSIONS, session, namespace)

    def add_target(i: int):  # type: ignore[no-untyped-def]
        def compute(live):  # type: ignore[no-untyped-def]
            status = dict(live.get("status") or {})
            targets = list(status.get("targets") or [])
            targets.append({"ref": {"kind": "Deployment", "name": f"t{i}"}, "totalHosts": 1})
            status["targets"] = targets
            return status

        return compute

    await asyncio.gather(
        *(
            update_status(rawkube, BACKUPSESSIONS, "s", namespace, add_target(i), attempts=20)
            for i in range(5)
        )
    )
    live = await rawkube.get(BACKUPSESSIONS, "s", namespace)
    names = sorted(t["ref"]["name"] for t in live["status"]["targets"])
    assert names == [f"t{i}" for i in range(5)], "no concurrent write may be lost"


async def test_repeated_event_is_counted(rawkube: Kube, namespace: str) -> None:
    cm = await rawkube.create(CONFIGMAPS, {"metadata": {"name": "c"}}, namespace)
    cm.setdefault("apiVersion", "v1")
    cm.setdefault("kind", "ConfigMap")
    rec = EventRecorder(rawkube, "stash-test")
    await rec.emit(cm, WARNING, "BackendSecretNotAvailable", "secret demo/s3 not found")
    await rec.emit(cm, WARNING, "BackendSecretNotAvailable", "secret demo/s3 not found")
    events = (await rawkube.list(EVENTS, namespace))["items"]
    ours = [e for e in events if e["reason"] == "BackendSecretNotAvailable"]
    assert len(ours) == 1 and ours[0]["count"] == 2
    assert ours[0]["involvedObject"]["name"] == "c" and ours[0]["type"] == "Warning"


async def _v(value: bool) -> bool:
    return value


async def test_a_warning_is_one_call_for_the_event_and_the_log_line(
    rawkube: Kube, namespace: str
) -> None:
    cm = await rawkube.create(CONFIGMAPS, {"metadata": {"name": "w"}}, namespace)
    cm.update(apiVersion="v1", kind="ConfigMap")
    rec = EventRecorder(rawkube, "stash-test")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(KeyFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("stash.kube.events")
    logger.addHandler(handler)
    try:
        with log_key("test/w"):
            await rec.warn(cm, "RepositoryInvalid", "bucket missing")
    finally:
        logger.removeHandler(handler)
    events = (await rawkube.list(EVENTS, namespace))["items"]
    ours = [(e["type"], e["message"]) for e in events if e["reason"] == "RepositoryInvalid"]
    assert ours == [("Warning", "bucket missing")]
    line = json.loads(out.getvalue())
    assert (line["level"], line["message"], line["key"]) == (
        "WARNING",
        f"ConfigMap {namespace}/w: RepositoryInvalid: bucket missing",
        "test/w",
    )
