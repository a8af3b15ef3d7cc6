"""What the leader installs at start: the agent ClusterRoles (repaired when edited) and
the built-in Functions and Tasks (a customised one is left as it is)."""

from __future__ import annotations

import pytest

from stash.contract.rbac import agent_cluster_roles
from stash.contract.resources import FUNCTIONS
from stash.controllers.catalog import builtin_functions, install_builtins
from stash.controllers.provisioning import FIELD_MANAGER
from stash.kube.client import JSON, Kube, NotFound, Resource
from stash.kube.resources import CLUSTERROLES
from tests.integration.operator.conftest import OperatorFactory
from tests.support.cluster import eventually

# serial: it empties the agent ClusterRoles
pytestmark = [pytest.mark.cluster, pytest.mark.serial]

CUSTOM_IMAGE = "registry.example.org/custom-stash:1"


async def _get(kube: Kube, res: Resource, name: str) -> JSON | None:
    try:
        return await kube.get(res, name)
    except NotFound:
        return None


async def test_roles_are_repaired_and_a_customised_function_is_kept(
    rawkube: Kube, run_operator: OperatorFactory
) -> None:
    op = await run_operator()
    role = agent_cluster_roles()[0]
    function = builtin_functions()[0]
    name, fn_name = role["metadata"]["name"], function["metadata"]["name"]
    await eventually(lambda: _get(rawkube, CLUSTERROLES, name), what="the agent ClusterRole")
    await eventually(lambda: _get(rawkube, FUNCTIONS, fn_name), what="the built-in Function")

    await rawkube.patch(CLUSTERROLES, name, {"rules": []})
    await rawkube.patch(FUNCTIONS, fn_name, {"spec": {"image": CUSTOM_IMAGE}})
    try:
        await install_builtins(op.ctx)  # what a new leader does
        live_role = await rawkube.get(CLUSTERROLES, name)
        assert live_role["rules"] == role["rules"], "an edited agent ClusterRole is repaired"
        live_fn = await rawkube.get(FUNCTIONS, fn_name)
        assert live_fn["spec"]["image"] == CUSTOM_IMAGE, "a customised built-in is kept"
    finally:  # other tests share the cluster-scoped built-in
        await rawkube.apply(FUNCTIONS, function, field_manager=FIELD_MANAGER, force=True)
