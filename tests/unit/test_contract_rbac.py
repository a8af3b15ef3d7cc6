"""The agent's ClusterRoles: the committed YAML is what the code says, nothing broader."""

from __future__ import annotations

from pathlib import Path

import yaml

from stash.contract.rbac import agent_cluster_roles

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac"


def test_committed_manifests_equal_the_roles() -> None:
    for role in agent_cluster_roles():
        path = RBAC / f"{role['metadata']['name']}.yaml"
        assert path.exists(), f"{path} missing: run stash.contract.rbac.write_manifests()"
        assert yaml.safe_load(path.read_text()) == role, (
            f"{path} is stale: regenerate with "
            "`python -c 'from stash.contract.rbac import write_manifests as w; "
            'w("manifests/rbac")\'`'
        )


def test_roles_are_least_privilege() -> None:
    names = set()
    for role in agent_cluster_roles():
        names.add(role["metadata"]["name"])
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            if rule["resources"] == ["secrets"]:
                assert rule["verbs"] == ["get"]  # never list every secret of a namespace
    assert names == {
        "stash-sidecar",
        "stash-restore-init-container",
        "stash-backup-job",
        "stash-restore-job",
        "stash-hook-exec",
    }
    # exec only in its own role: the four every agent gets cannot exec into pods
    for role in agent_cluster_roles():
        execs = [r for r in role["rules"] if "pods/exec" in r["resources"]]
        assert bool(execs) == (role["metadata"]["name"] == "stash-hook-exec")
