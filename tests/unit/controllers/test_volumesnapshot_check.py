"""VolumeSnapshotClassFound (stash.controllers.volumesnapshot.snapshotter_check): what a
VolumeSnapshotter BackupConfiguration says when the CRDs or the class are missing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from stash.api import BackupConfiguration
from stash.controllers.context import ControllerContext
from stash.controllers.volumesnapshot import snapshotter_check
from stash.kube.client import JSON, NotFound, Resource


class _Cluster:
    """An apiserver holding only `objects` (plural -> names); lists return them all."""

    def __init__(self, objects: dict[str, dict[str, JSON]]) -> None:
        self.objects = objects

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> JSON:
        found = self.objects.get(res.plural, {}).get(name)
        if found is None:
            raise NotFound(404, "NotFound", f"{res.plural} {name} not found")
        return found

    async def list(self, res: Resource, namespace: str | None = None, **_: Any) -> JSON:
        return {"items": list(self.objects.get(res.plural, {}).values())}


CRDS = {
    n: {"metadata": {"name": n}}
    for n in (
        "volumesnapshots.snapshot.storage.k8s.io",
        "volumesnapshotcontents.snapshot.storage.k8s.io",
        "volumesnapshotclasses.snapshot.storage.k8s.io",
    )
}


def _bc(class_name: str | None) -> BackupConfiguration:
    target: dict[str, Any] = {"ref": {"kind": "PersistentVolumeClaim", "name": "data"}}
    if class_name:
        target["snapshotClassName"] = class_name
    return BackupConfiguration.model_validate(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupConfiguration",
            "metadata": {"name": "bc", "namespace": "ns"},
            "spec": {
                "driver": "VolumeSnapshotter",
                "schedule": "@daily",
                "target": target,
                "retentionPolicy": {"name": "keep-all"},
            },
        }
    )


def _ctx(objects: dict[str, dict[str, JSON]]) -> ControllerContext:
    return cast(ControllerContext, SimpleNamespace(kube=_Cluster(objects)))


async def test_missing_crds_say_what_to_install() -> None:
    check = await snapshotter_check(_ctx({}), _bc("csi"))
    assert (check.status, check.reason) == (False, "VolumeSnapshotCRDsMissing")
    assert "volumesnapshots.snapshot.storage.k8s.io" in check.message
    assert "snapshot-controller" in check.message


async def test_a_missing_class_is_named() -> None:
    check = await snapshotter_check(_ctx({"customresourcedefinitions": CRDS}), _bc("csi"))
    assert (check.status, check.reason) == (False, "VolumeSnapshotClassNotFound")
    assert "VolumeSnapshotClass csi does not exist" in check.message


async def test_the_named_class_or_a_default_one_is_found() -> None:
    classes = {
        "csi": {"metadata": {"name": "csi"}},
        "dflt": {
            "metadata": {
                "name": "dflt",
                "annotations": {"snapshot.storage.k8s.io/is-default-class": "true"},
            }
        },
    }
    objects = {"customresourcedefinitions": CRDS, "volumesnapshotclasses": classes}
    assert (await snapshotter_check(_ctx(objects), _bc("csi"))).status is True
    check = await snapshotter_check(_ctx(objects), _bc(None))
    assert check.status is True
    assert "dflt" in check.message
    del classes["dflt"]
    check = await snapshotter_check(_ctx(objects), _bc(None))
    assert check.status is False
    assert "is-default-class" in check.message
