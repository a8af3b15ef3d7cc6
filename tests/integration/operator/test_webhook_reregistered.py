"""A deleted webhook configuration is registered again by the leader (issue #11, found
by the chaos suite: it used to stay deleted until an operator replica restarted, and
workloads were admitted without their agent meanwhile)."""

from __future__ import annotations

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import Kube, KubeError, NotFound
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash.webhook.registration import MUTATING, VALIDATING
from tests.integration.operator.conftest import (
    OperatorFactory,
    backup_configuration,
    deployment,
    repository,
    secret,
)
from tests.integration.operator.test_operator_webhook import _serving, _webhook_settings
from tests.support.cluster import eventually
from tests.support.webhook import wait_until_active

pytestmark = pytest.mark.cluster


async def test_deleted_webhook_configurations_are_registered_again(
    rawkube: Kube, run_operator: OperatorFactory, namespace: str
) -> None:
    extra = _webhook_settings(namespace)
    name = str(extra["webhook_config_name"])
    op = await run_operator(**extra, webhook_recheck_interval=1.0)
    await _serving(op)
    await wait_until_active(rawkube, namespace)
    await rawkube.create(SECRETS, secret(), namespace)
    await rawkube.create(REPOSITORIES, repository(), namespace)
    await rawkube.create(BACKUPCONFIGURATIONS, backup_configuration(), namespace)

    for res in (MUTATING, VALIDATING):
        await rawkube.delete(res, name)

    async def registered() -> bool:
        for res in (MUTATING, VALIDATING):
            try:
                await rawkube.get(res, name)
            except NotFound:
                return False
        return True

    await eventually(registered, timeout=30, what="both configurations registered again")
    await wait_until_active(rawkube, namespace)
    # the webhook works again: a workload gets its agent, a bad object is refused
    stored = await rawkube.create(DEPLOYMENTS, deployment(), namespace)
    names = [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]]
    assert names == ["app", "stash"]
    bad = backup_configuration("bad", schedule="*/5 * * *")
    with pytest.raises(KubeError) as refused:
        await rawkube.create(BACKUPCONFIGURATIONS, bad, namespace)
    assert "invalid cron schedule" in refused.value.message
