"""The Repositories cache keeps no `status.references` (one entry per invoker: ~1 MB at
10,000 invokers), yet the reconciler still tells an unchanged list from a changed one."""

from __future__ import annotations

from stash.controllers.repository import ReferenceDigests
from stash.kube.client import JSON


def _ref(name: str) -> JSON:
    return {
        "apiGroup": "stash.appscode.com",
        "kind": "BackupConfiguration",
        "name": name,
        "namespace": "ns",
    }


def _repo(references: list[JSON] | None) -> JSON:
    status: JSON = {"observedGeneration": 1, "totalSize": "1 MiB"}
    if references is not None:
        status["references"] = references
    return {
        "metadata": {"name": "repo", "namespace": "ns", "managedFields": [{"x": 1}]},
        "spec": {"backend": {"storageSecretName": "s"}},
        "status": status,
    }


def test_the_cached_copy_drops_the_references_and_keeps_the_rest() -> None:
    digests = ReferenceDigests()
    cached = digests(_repo([_ref("a"), _ref("b")]))
    assert "references" not in cached["status"]
    assert cached["status"]["totalSize"] == "1 MiB"
    assert cached["spec"] == {"backend": {"storageSecretName": "s"}}
    assert "managedFields" not in cached["metadata"]


def test_an_unchanged_list_is_recognised_and_a_changed_one_is_not() -> None:
    digests = ReferenceDigests()
    cached = digests(_repo([_ref("a"), _ref("b")]))
    # the apiserver may order a reference's keys differently: same list
    reordered = [dict(reversed(list(r.items()))) for r in (_ref("a"), _ref("b"))]
    assert digests.same("ns/repo", cached["status"], reordered)
    assert not digests.same("ns/repo", cached["status"], [_ref("a")])
    assert not digests.same("ns/repo", cached["status"], [_ref("b"), _ref("a")])


def test_no_references_is_an_empty_list() -> None:
    digests = ReferenceDigests()
    cached = digests(_repo(None))
    assert digests.same("ns/repo", cached["status"], [])
    assert not digests.same("ns/repo", cached["status"], [_ref("a")])


def test_a_repository_the_transform_never_saw_is_compared_by_its_list() -> None:
    digests = ReferenceDigests()
    raw = _repo([_ref("a")])
    assert digests.same("ns/repo", raw["status"], [_ref("a")])
    assert not digests.same("ns/repo", raw["status"], [])
