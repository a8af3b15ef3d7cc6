"""A Repository in another namespace (issue 11, item 6): an allowed cross-namespace backup
works with no RBAC but what the operator grants — a Role in the Repository's namespace
naming that Repository and its Secret — and a refused one is NotReady with no agent.

The operator watches every namespace here (the invoker's and the Repository's); the
sidecar runs with its pod's ServiceAccount token and nothing bound by the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import JSON, Kube, NotFound, Resource
from stash.kube.resources import DEPLOYMENTS, NAMESPACES, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    backup_configuration,
    condition,
    deployment,
    finished,
    host_restic,
    host_stats,
    injected_pods,
    local_repository,
    ready_invoker,
    secret,
    trigger,
    write_tree,
)
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

# serial: an operator watching every namespace
pytestmark = [pytest.mark.cluster, pytest.mark.serial]

ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")


@pytest.fixture
async def store(rawkube: Kube) -> AsyncIterator[str]:
    """Another namespace, where the shared Repositories live."""
    name = f"store-{uuid.uuid4().hex[:6]}"
    await rawkube.create(NAMESPACES, {"metadata": {"name": name, "labels": {"role": "store"}}})
    yield name
    await rawkube.delete(NAMESPACES, name)


def _shared(host_dir: Path, name: str, policy: JSON | None) -> JSON:
    repo = local_repository(host_dir)
    repo["metadata"]["name"] = name
    if policy is not None:
        repo["spec"]["usagePolicy"] = {"allowedNamespaces": policy}
    return repo


def _user_of(restic_bin: str, repo: str, store: str, name: str = "bc", target: str = "web") -> JSON:
    bc = backup_configuration(restic_bin, target=target)
    bc["metadata"]["name"] = name
    bc["spec"]["repository"] = {"name": repo, "namespace": store}
    return bc


async def test_an_allowed_cross_namespace_backup_succeeds_with_a_role_for_that_repository(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    store: str,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator(watch_namespace=None)
    repo_dir = tmp_path / "repo"
    await rawkube.create(SECRETS, secret(), store)
    await rawkube.create(
        SECRETS, {"metadata": {"name": "unrelated"}, "stringData": {"k": "v"}}, store
    )
    await rawkube.create(
        REPOSITORIES,
        _shared(
            repo_dir, "shared", {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}
        ),
        store,
    )
    await rawkube.patch(NAMESPACES, namespace, {"metadata": {"labels": {"team": "a"}}})
    await rawkube.create(DEPLOYMENTS, deployment(), namespace)
    await rawkube.create(BACKUPCONFIGURATIONS, _user_of(restic_bin, "shared", store), namespace)

    bc = await ready_invoker(rawkube, namespace)
    assert condition(bc, "RepositoryUsageAllowed")["status"] == "True"
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")

    # exactly that Repository and its Secret, for the workload's ServiceAccount
    grant = f"stash-backup-{namespace}-bc"
    role = await rawkube.get(ROLES, grant, store)
    names = {(r["resources"][0], tuple(r["resourceNames"])) for r in role["rules"]}
    assert names == {
        ("repositories", ("shared",)),
        ("repositories/status", ("shared",)),
        ("secrets", ("repo-secret",)),
    }
    binding = await rawkube.get(ROLE_BINDINGS, f"{grant}-default", store)  # per account
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "default", "namespace": namespace}
    ]
    assert role["metadata"]["ownerReferences"][0]["kind"] == "Repository"
    assert binding["metadata"]["ownerReferences"][0]["kind"] == "Role"

    data = tmp_path / "data"
    write_tree(data, {"app/db.bin": os.urandom(20_000)})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    name = await trigger(rawkube, namespace)
    session = await finished(rawkube, namespace, name, logs=[sidecar])
    assert session["status"]["phase"] == "Succeeded", (session["status"], sidecar.logs())
    (snap,) = host_stats(session)["host-0"]["snapshots"]
    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")
    assert [s.short_id for s in await restic.snapshots()] == [snap["name"]]
    repo_status = (await rawkube.get(REPOSITORIES, "shared", store)).get("status") or {}
    assert repo_status.get("snapshotCount") == 1  # the agent wrote the status there

    # the invoker goes: so does its grant
    await rawkube.delete(BACKUPCONFIGURATIONS, "bc", namespace)

    async def revoked() -> bool:
        try:
            await rawkube.get(ROLES, grant, store)
        except NotFound:
            return True
        return False

    await eventually(revoked, timeout=30, what="the grant to be deleted with the invoker")


async def test_a_refused_cross_namespace_backup_is_not_ready_and_gets_no_agent(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    store: str,
    tmp_path: Path,
    restic_bin: str,
) -> None:
    await run_operator(watch_namespace=None)
    await rawkube.create(SECRETS, secret(), store)
    await rawkube.create(REPOSITORIES, _shared(tmp_path / "repo", "private", None), store)
    await rawkube.create(DEPLOYMENTS, deployment(), namespace)
    await rawkube.create(BACKUPCONFIGURATIONS, _user_of(restic_bin, "private", store), namespace)

    async def not_ready() -> JSON | None:
        obj = await rawkube.get(BACKUPCONFIGURATIONS, "bc", namespace)
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        usage = conds.get("RepositoryUsageAllowed")
        return obj if usage and usage["status"] == "False" else None

    bc = await eventually(not_ready, timeout=30, what="RepositoryUsageAllowed False")
    assert bc["status"]["phase"] == "NotReady"
    message = condition(bc, "RepositoryUsageAllowed")["message"]
    assert f'does not allow use from namespace "{namespace}"' in message
    d = await rawkube.get(DEPLOYMENTS, "web", namespace)
    assert [c["name"] for c in d["spec"]["template"]["spec"]["containers"]] == ["app"]
    with pytest.raises(NotFound):
        await rawkube.get(ROLES, f"stash-backup-{namespace}-bc", store)
