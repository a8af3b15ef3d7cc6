"""ReplicaSets and ReplicationControllers do not replace their pods when the template
changes: the pods that do not carry the template's injection are the ones to recreate."""

from __future__ import annotations

from stash.contract.names import ANN_BACKUP_HASH
from stash.controllers.rollout import carries_injection, caught_up, stale_pods
from stash.kube.client import JSON

HASH = {ANN_BACKUP_HASH: "42"}


def _rs(containers: list[str], annotations: dict[str, str]) -> JSON:
    return {
        "metadata": {"name": "web", "namespace": "n", "uid": "rs-uid"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [{"name": c} for c in containers]},
            }
        },
    }


def _pod(name: str, containers: list[str], annotations: dict[str, str], **meta: object) -> JSON:
    return {
        "metadata": {
            "name": name,
            "annotations": annotations,
            "ownerReferences": [{"controller": True, "uid": meta.pop("owner", "rs-uid")}],
            **meta,
        },
        "spec": {"containers": [{"name": c} for c in containers]},
    }


def test_pods_started_before_the_injection_are_stale() -> None:
    rs = _rs(["app", "stash"], HASH)
    pods = [
        _pod("web-old", ["app"], {}),
        _pod("web-new", ["app", "stash"], HASH),
        _pod("web-other-hash", ["app", "stash"], {ANN_BACKUP_HASH: "41"}),
        _pod("web-going", ["app"], {}, deletionTimestamp="2026-01-01T00:00:00Z"),
        _pod("someone-else", ["app"], {}, owner="other-uid"),
    ]
    assert stale_pods(rs, pods) == ["web-old", "web-other-hash"]


def test_pods_keeping_a_removed_sidecar_are_stale_too() -> None:
    rs = _rs(["app"], {})
    assert stale_pods(rs, [_pod("a", ["app", "stash"], HASH), _pod("b", ["app"], {})]) == ["a"]


def test_a_controller_that_has_not_observed_the_template_may_still_make_old_pods() -> None:
    # A ReplicationController made its first pod from the template it had before the
    # injection, after the operator had looked and found no pods: look again until it
    # observed the injected template.
    rc = _rs(["app", "stash"], HASH)
    rc["metadata"]["generation"] = 2
    assert not caught_up(rc)
    rc["status"] = {"observedGeneration": 1}
    assert not caught_up(rc)
    rc["status"] = {"observedGeneration": 2}
    assert caught_up(rc)


def test_only_a_template_with_the_agent_or_a_just_patched_one_is_worth_a_pod_list() -> None:
    assert carries_injection(_rs(["app", "stash"], HASH))
    assert carries_injection(_rs(["app"], HASH))
    assert not carries_injection(_rs(["app"], {}))
