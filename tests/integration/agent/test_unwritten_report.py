"""A sidecar whose report could not be written reports the same backup again; it does
not back the host up a second time (issue #11, found by the chaos suite: after an
apiserver restart a second snapshot was taken and the first belonged to no session).

The apiserver refusing what the agent writes after its backup (the host's stats entry
and the snapshot record on its heartbeat) stands in for an apiserver that was down at
that moment: a ValidatingAdmissionPolicy refuses both until the test removes it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.contract.sessions import HEARTBEAT_SNAPSHOTS
from stash.kube.client import JSON, Kube, KubeError, NotFound, Resource
from stash.kube.leader import LEASES
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    backup_configuration,
    create_objects,
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

pytestmark = pytest.mark.cluster

POLICIES = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicies",
    "ValidatingAdmissionPolicy",
    namespaced=False,
)
BINDINGS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicybindings",
    "ValidatingAdmissionPolicyBinding",
    namespaced=False,
)


def _refuse_reports(name: str, namespace: str) -> tuple[JSON, JSON]:
    """A policy refusing host stats in BackupSessions and snapshot records on Leases of
    `namespace`, and its binding."""
    leases = (
        "request.resource.resource != 'leases' || !has(object.metadata.annotations) || "
        f"!('{HEARTBEAT_SNAPSHOTS}' in object.metadata.annotations)"
    )
    stats = (
        "request.resource.resource != 'backupsessions' || !has(object.status) || "
        "!has(object.status.targets) || "
        "object.status.targets.all(t, !has(t.stats) || size(t.stats) == 0)"
    )
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["stash.appscode.com"],
                        "apiVersions": ["*"],
                        "operations": ["UPDATE"],
                        "resources": ["backupsessions/status"],
                    },
                    {
                        "apiGroups": ["coordination.k8s.io"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["leases"],
                    },
                ]
            },
            "validations": [
                {"expression": leases, "message": "not now: the apiserver is away (test)"},
                {"expression": stats, "message": "not now: the apiserver is away (test)"},
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    return policy, binding


async def _refusing(kube: Kube, ns: str) -> bool:
    """Whether the policy is in force (a snapshot record on a Lease is refused)."""
    probe = {
        "metadata": {"name": "policy-probe", "annotations": {HEARTBEAT_SNAPSHOTS: "[]"}},
        "spec": {"holderIdentity": "probe"},
    }
    try:
        await kube.create(LEASES, probe, ns)
    except KubeError as exc:
        return "not now" in str(exc.message or exc)
    await kube.delete(LEASES, "policy-probe", ns)
    return False


async def test_a_report_that_could_not_be_written_is_written_later_without_a_second_backup(
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    agent_rbac: None,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await run_operator(executor_heartbeat_timeout=120)  # the refusal is no silence here
    repo_dir = tmp_path / "repo"
    bc = backup_configuration(restic_bin)
    await create_objects(
        rawkube,
        namespace,
        [
            (SECRETS, secret()),
            (REPOSITORIES, local_repository(repo_dir)),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(rawkube, namespace)
    (pod,) = await injected_pods(rawkube, namespace, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"a.bin": os.urandom(64 * 1024)})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})

    policy, binding = _refuse_reports(f"refuse-reports-{namespace}", namespace)
    await rawkube.create(POLICIES, policy)
    await rawkube.create(BINDINGS, binding)
    try:
        await eventually(
            lambda: _refusing(rawkube, namespace), timeout=30, what="the policy in force"
        )
        name = await trigger(rawkube, namespace)

        async def refused() -> bool:
            return "trying again shortly" in sidecar.logs()

        await eventually(refused, timeout=90, what="the sidecar's report refused")
    finally:
        for res in (BINDINGS, POLICIES):
            with contextlib.suppress(NotFound):
                await rawkube.delete(res, policy["metadata"]["name"])

    session = await finished(rawkube, namespace, name, timeout=120, logs=[sidecar])
    assert session["status"]["phase"] == "Succeeded", (session["status"], sidecar.logs()[-3000:])
    reported = {s["name"] for s in host_stats(session)["host-0"]["snapshots"]}
    restic = host_restic({"local": {"mountPath": str(repo_dir)}}, restic_bin, tmp_path / "s")
    stored = {s.short_id for s in await restic.snapshots()}
    assert stored == reported, (
        "one backup, and every snapshot in the repository has its session",
        stored,
        reported,
        sidecar.logs()[-3000:],
    )
