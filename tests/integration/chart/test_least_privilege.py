"""What the installed chart lets its ServiceAccounts do, asked the way an admin would:
`kubectl auth can-i --as=system:serviceaccount:NS:NAME` (real kubectl, answered by the
apiserver's RBAC authorizer).

The operator's account may do what docs/rbac.md lists and nothing it has no reason to:
no `pods/exec`, no Pod reads or creates (only the deletes that roll out a ReplicaSet),
no Secret writes outside its own certificate Secret, no
ClusterRole writes, no webhook configurations or APIService but its own. A workload's account, once
the operator bound the sidecar's role to it, reads the Repository's storage Secret and
no other Secret of its namespace.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, ROLEBINDINGS, SECRETS
from stash_dev import ControlPlane
from tests.integration.chart.conftest import IMAGE
from tests.integration.operator.conftest import (
    OperatorFactory,
    backup_configuration,
    deployment,
    repository,
    secret,
)
from tests.support.chart_tools import ROOT, kubectl
from tests.support.cluster import eventually
from tests.support.helm_release import HelmRelease

# serial: the chart's cluster-scoped objects and webhooks
pytestmark = [pytest.mark.cluster, pytest.mark.serial]

OPERATOR = "stash-operator"
WEBHOOK_SECRET = "stash-operator-webhook-tls"
WEBHOOK_CONFIG = "admission.stash.appscode.com"
SNAPSHOT_API = "v1alpha1.repositories.stash.appscode.com"
SECRET_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]


def documented_secret_verbs() -> set[str]:
    """The verbs docs/rbac.md's operator ClusterRole table gives on `secrets`."""
    text = (ROOT / "docs" / "rbac.md").read_text()
    table = text.split("## Operator ClusterRole", 1)[1].split("\n## ", 1)[0]
    row = re.search(r"^\| `\"\"` \| `secrets` \| ([^|]+) \|", table, re.MULTILINE)
    assert row, "docs/rbac.md has no `secrets` row in the operator ClusterRole table"
    return {v.strip() for v in row.group(1).split(",")}


async def can_i(
    control_plane: ControlPlane, who: str, verb: str, resource: str, namespace: str | None
) -> bool:
    """`kubectl auth can-i VERB TYPE[/NAME] [--subresource S] [-n NS] --as WHO` (written
    here `TYPE[/NAME][:SUBRESOURCE]`): the apiserver's yes or no."""
    resource, _, subresource = resource.partition(":")
    args = ["auth", "can-i", verb, resource, f"--as={who}"]
    args += [f"--subresource={subresource}"] if subresource else []
    args += ["-n", namespace] if namespace else []
    done = await asyncio.to_thread(kubectl, control_plane.kubeconfig, *args)
    answer = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert answer in ("yes", "no"), f"kubectl auth can-i {verb} {resource}: {done.stderr}"
    return answer == "yes"


async def _mismatches(
    control_plane: ControlPlane, who: str, expected: list[tuple[str, str, str | None, bool]]
) -> list[str]:
    wrong = []
    for verb, resource, ns, allowed in expected:
        got = await can_i(control_plane, who, verb, resource, ns)
        if got != allowed:
            where = f" -n {ns}" if ns else ""
            answer = "yes" if got else "no"
            wrong.append(f"{verb} {resource.replace(':', ' --subresource=')}{where}: {answer}")
    return wrong


async def test_the_operator_account_cannot_do_what_it_has_no_reason_to(
    control_plane: ControlPlane, release: HelmRelease, apps_namespace: str, kubectl_bin: str
) -> None:
    await release.install(f"image.repository={IMAGE}")
    ns, apps = release.namespace, apps_namespace
    who = f"system:serviceaccount:{ns}:{OPERATOR}"
    documented = documented_secret_verbs()
    expected: list[tuple[str, str, str | None, bool]] = [
        # No hooks in this chart: nothing to exec into, no Pods to read.
        ("create", "pods:exec", apps, False),
        ("create", "pods:exec", ns, False),
        ("get", "pods:log", apps, False),
        ("get", "pods", apps, False),
        ("create", "pods", apps, False),
        # A ReplicaSet/RC does not roll out an injected template: its pods are deleted.
        ("delete", "pods", apps, True),
        # Secrets: reading is justified in docs/rbac.md (storage Secrets, any namespace);
        # writing only its own certificate Secret in the release namespace.
        *[(v, "secrets", "kube-system", v in documented) for v in SECRET_VERBS],
        ("update", f"secrets/{WEBHOOK_SECRET}", ns, True),
        ("update", "secrets/someone-elses", ns, False),
        ("delete", f"secrets/{WEBHOOK_SECRET}", ns, False),
        ("create", "secrets", apps, False),
        # RBAC: bind the four agent roles by name; never write or escalate roles.
        ("bind", "clusterroles/stash-sidecar", None, True),
        ("bind", "clusterroles/cluster-admin", None, False),
        ("create", "clusterroles", None, False),
        ("escalate", "clusterroles", None, False),
        ("create", "clusterrolebindings", None, False),
        # Webhook configurations: its own caBundle only; never create or delete one.
        ("update", f"mutatingwebhookconfigurations/{WEBHOOK_CONFIG}", None, True),
        ("update", f"validatingwebhookconfigurations/{WEBHOOK_CONFIG}", None, True),
        ("update", "validatingwebhookconfigurations/another-product", None, False),
        ("delete", f"mutatingwebhookconfigurations/{WEBHOOK_CONFIG}", None, False),
        ("create", "mutatingwebhookconfigurations", None, False),
        # The Snapshot API: its APIService's caBundle only, never create or delete one;
        # what an aggregated server needs (system:auth-delegator, and the front-proxy CA
        # in kube-system/extension-apiserver-authentication), no other ConfigMap there.
        ("update", f"apiservices/{SNAPSHOT_API}", None, True),
        ("update", "apiservices/v1beta1.metrics.k8s.io", None, False),
        ("delete", f"apiservices/{SNAPSHOT_API}", None, False),
        ("create", "apiservices", None, False),
        ("get", "configmaps/extension-apiserver-authentication", "kube-system", True),
        ("get", "configmaps/kube-root-ca.crt", "kube-system", False),
        ("create", "tokenreviews", None, True),
        ("create", "subjectaccessreviews", None, True),
        # Leases: its own, in its namespace.
        ("update", f"leases/{OPERATOR}", ns, True),
        ("update", "leases/kube-scheduler", "kube-system", False),
        ("create", "leases", "kube-system", False),
        # Nothing else it has no use for.
        ("get", "configmaps", apps, False),
        ("create", "customresourcedefinitions", None, False),
        ("impersonate", "serviceaccounts", apps, False),
        ("create", "serviceaccounts:token", apps, False),
        ("*", "*", None, False),
    ]
    wrong = await _mismatches(control_plane, who, expected)
    assert not wrong, "the operator's ServiceAccount is allowed or refused unexpectedly:\n" + (
        "\n".join(wrong)
    )


async def _sidecar_binding(kube: Kube, ns: str) -> JSON:
    async def probe() -> JSON | None:
        for rb in (await kube.list(ROLEBINDINGS, ns))["items"]:
            subjects = rb.get("subjects") or []
            if rb["roleRef"]["name"] == "stash-sidecar" and any(
                s.get("kind") == "ServiceAccount" and s.get("name") == "default" for s in subjects
            ):
                return dict(rb)
        return None

    return await eventually(probe, timeout=60, what="the sidecar's RoleBinding for `default`")


async def test_a_workload_account_reads_only_its_repositorys_secret(
    control_plane: ControlPlane,
    rawkube: Kube,
    run_operator: OperatorFactory,
    namespace: str,
    kubectl_bin: str,
) -> None:
    await run_operator()
    await rawkube.create(SECRETS, secret(), namespace)
    unrelated = {"metadata": {"name": "database-admin"}, "stringData": {"password": "x"}}
    await rawkube.create(SECRETS, unrelated, namespace)
    await rawkube.create(REPOSITORIES, repository(), namespace)
    await rawkube.create(DEPLOYMENTS, deployment(), namespace)
    await rawkube.create(BACKUPCONFIGURATIONS, backup_configuration(), namespace)
    await _sidecar_binding(rawkube, namespace)

    who = f"system:serviceaccount:{namespace}:default"
    expected: list[tuple[str, str, str | None, bool]] = [
        ("get", "secrets/repo-secret", namespace, True),  # the sidecar needs it
        ("get", "secrets/database-admin", namespace, False),
        ("list", "secrets", namespace, False),
        ("watch", "secrets", namespace, False),
        ("update", "secrets/repo-secret", namespace, False),
    ]

    # the per-invoker Role (resourceNames) is applied right after the binding
    async def granted() -> bool:
        return await can_i(control_plane, who, "get", "secrets/repo-secret", namespace)

    await eventually(granted, timeout=30, what="the agent's grant on its Repository's Secret")
    wrong = await _mismatches(control_plane, who, expected)
    assert not wrong, (
        "the workload's ServiceAccount, once the sidecar's role is bound to it, reaches "
        "Secrets it has no use for (issue 12 item 4: agent roles read only the Secrets "
        "they need, by resourceNames):\n" + "\n".join(wrong)
    )
