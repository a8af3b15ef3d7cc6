"""`helm install` of charts/stash into the test apiserver, and the operator it deploys.

Without a running operator: install creates every object the chart renders (and its
CRDs), `helm upgrade` to a changed values file changes the live objects, and `helm
uninstall` leaves no webhook configuration behind (an orphaned failing webhook would
refuse every Stash object in the cluster). With the operator Deployment's pod run by the
pod runner under its own ServiceAccount (no admin credentials): it becomes ready on its
pod IP, takes the leader Lease and serves the webhook that the apiserver calls through
the chart's Service (`--enable-aggregator-routing` sends the call to the endpoint IP);
its Snapshot API is Available to the aggregator (`kubectl get snapshots`); then a
Deployment gets its backup sidecar at admission, a BackupSession and a RestoreSession
succeed under the chart's RBAC.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from pathlib import Path

import pytest
import yaml

from stash.contract.resources import (
    BACKUPCONFIGURATIONS,
    REPOSITORIES,
    RESTORESESSIONS,
)
from stash.kube.client import JSON, Kube, KubeError, Resource
from stash.kube.resources import CRDS, DEPLOYMENTS, LEASES, SECRETS
from stash_dev import ControlPlane
from stash_dev.podrunner import PodRunner
from tests.integration.agent.conftest import (
    agent_env,
    backup_configuration,
    deployment,
    finished,
    injected_pods,
    local_repository,
    read_tree,
    ready_invoker,
    secret,
    trigger,
    write_tree,
)
from tests.integration.chart.conftest import IMAGE
from tests.support.chart_tools import CHART, kubectl
from tests.support.cluster import eventually
from tests.support.helm_release import APISERVICES, MUTATING, VALIDATING, HelmRelease
from tests.support.operator_pod import (
    WEBHOOK_NOT_SERVED,
    ChartOperator,
    OperatorPod,
    endpoints,
    webhook_problem,
)
from tests.support.storage import free_port

# serial: the chart's cluster-scoped objects and webhooks
pytestmark = [pytest.mark.cluster, pytest.mark.serial]

SERVICES = Resource("", "v1", "services", "Service")
OPERATOR = "stash-operator"  # <fullname>-operator of release `stash`
WEBHOOK_CONFIG = "admission.stash.appscode.com"
SNAPSHOT_API = "v1alpha1.repositories.stash.appscode.com"
CRD_NAMES = sorted(
    yaml.safe_load(p.read_text())["metadata"]["name"] for p in (CHART / "crds").glob("*.yaml")
)


async def _live(control_plane: ControlPlane, docs: list[JSON]) -> set[tuple[str, str]]:
    """(kind, name) of each of `docs` that exists, asked with kubectl."""
    manifest = yaml.safe_dump_all(docs)
    done = await asyncio.to_thread(
        kubectl,
        control_plane.kubeconfig,
        "get",
        "--ignore-not-found",
        "-f",
        "-",
        "-o",
        "yaml",
        stdin=manifest,
    )
    assert done.returncode == 0, done.stderr
    items = (yaml.safe_load(done.stdout) or {}).get("items") or []
    return {(i["kind"], i["metadata"]["name"]) for i in items}


async def _available(kube: Kube) -> bool:
    api = await kube.get(APISERVICES, SNAPSHOT_API)
    conds = {c["type"]: c["status"] for c in (api.get("status") or {}).get("conditions") or []}
    return conds.get("Available") == "True"


def _kinds_and_names(docs: list[JSON]) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in docs}


async def _established(kube: Kube, name: str) -> bool:
    crd = await kube.get(CRDS, name)
    conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
    return conds.get("Established") == "True"


async def test_helm_install_creates_every_object_of_the_chart(
    control_plane: ControlPlane, rawkube: Kube, release: HelmRelease, kubectl_bin: str
) -> None:
    out = await release.install(f"image.repository={IMAGE}")
    assert "STATUS: deployed" in out, out

    manifest = await release.manifest()
    assert _kinds_and_names(manifest) == _kinds_and_names(await release.template())
    kinds = {kind for kind, _ in _kinds_and_names(manifest)}
    assert kinds >= {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "PodDisruptionBudget",
        "APIService",
    }
    assert await _live(control_plane, manifest) == _kinds_and_names(manifest)
    for name in CRD_NAMES:  # helm installs crds/ first (and keeps existing ones)
        assert await _established(rawkube, name), name

    # The webhooks are called through the chart's Service, whose port leads to the
    # operator container's webhook port.
    service = await rawkube.get(SERVICES, OPERATOR, release.namespace)
    (https,) = [p for p in service["spec"]["ports"] if p["name"] == "https-webhook"]
    for res in (MUTATING, VALIDATING):
        config = await rawkube.get(res, WEBHOOK_CONFIG)
        assert release.owns(config)
        for hook in config["webhooks"]:
            ref = hook["clientConfig"]["service"]
            assert (ref["namespace"], ref["name"], ref["port"]) == (
                release.namespace,
                OPERATOR,
                https["port"],
            ), hook["name"]
    deploy = await rawkube.get(DEPLOYMENTS, OPERATOR, release.namespace)
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert {"name": "webhook", "containerPort": 8443, "protocol": "TCP"} in container["ports"]
    assert https["targetPort"] == "webhook"
    # The aggregator calls the Snapshot API through the same Service, on its own port.
    api = await rawkube.get(APISERVICES, SNAPSHOT_API)
    assert release.owns(api)
    (snapshots,) = [p for p in service["spec"]["ports"] if p["name"] == "https-snapshots"]
    assert api["spec"]["service"] == {
        "namespace": release.namespace,
        "name": OPERATOR,
        "port": snapshots["port"],
    }
    assert snapshots["targetPort"] == "snapshot-api"


async def test_helm_upgrade_to_a_changed_values_file_and_uninstall_leave_no_webhook(
    control_plane: ControlPlane, rawkube: Kube, release: HelmRelease, tmp_path: Path
) -> None:
    await release.install(f"image.repository={IMAGE}")
    changed = tmp_path / "values.yaml"
    changed.write_text(
        yaml.safe_dump(
            {
                "image": {"repository": IMAGE, "tag": "v-next"},
                "replicaCount": 1,
                "logLevel": "DEBUG",
                "webhook": {"mutating": {"failurePolicy": "Fail"}},
            }
        )
    )
    await release.upgrade(values_file=changed)
    assert await release.revision() == 2

    deploy = await rawkube.get(DEPLOYMENTS, OPERATOR, release.namespace)
    assert deploy["spec"]["replicas"] == 1
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{IMAGE}:v-next"
    assert "--log-level=DEBUG" in container["args"]
    mutating = await rawkube.get(MUTATING, WEBHOOK_CONFIG)
    assert {h["failurePolicy"] for h in mutating["webhooks"]} == {"Fail"}
    validating = await rawkube.get(VALIDATING, WEBHOOK_CONFIG)
    assert {h["failurePolicy"] for h in validating["webhooks"]} == {"Fail"}
    # replicaCount 1: no PodDisruptionBudget any more (it would block every drain).
    assert "PodDisruptionBudget" not in {d["kind"] for d in await release.manifest()}

    manifest = await release.manifest()
    await release.uninstall()
    assert await release.webhook_configurations() == []
    for res in (MUTATING, VALIDATING):
        names = [o["metadata"]["name"] for o in (await rawkube.list(res))["items"]]
        assert WEBHOOK_CONFIG not in names
    assert await _live(control_plane, manifest) == set()
    for name in CRD_NAMES:  # helm never deletes CRDs (they would take every backup along)
        assert await _established(rawkube, name), name


# ---------------------------------------------------------------- the operator, running


async def _install_for_a_run(release: HelmRelease) -> tuple[int, int, int]:
    """Install one replica on free ports (pods share the host's network); the metrics,
    webhook and Snapshot API ports."""
    metrics_port, webhook_port, snapshot_port = free_port(), free_port(), free_port()
    await release.install(
        f"image.repository={IMAGE}",
        "replicaCount=1",
        f"metrics.port={metrics_port}",
        f"webhook.port={webhook_port}",
        f"snapshotApi.port={snapshot_port}",
    )
    return metrics_port, webhook_port, snapshot_port


async def _serving_operator(release: HelmRelease, chart_operator: ChartOperator) -> OperatorPod:
    """The release's operator, ready, with its webhook reachable as the Service's name."""
    metrics_port, webhook_port, _ = await _install_for_a_run(release)
    op = await chart_operator.start(release.namespace, release.name, metrics_port, webhook_port)
    await _expect_webhook(release, op)
    return op


async def _expect_webhook(release: HelmRelease, op: OperatorPod) -> None:
    host = f"{OPERATOR}.{release.namespace}.svc"
    problem: list[str | None] = [None]

    async def served() -> bool:
        problem[0] = await webhook_problem(release.kube, op, WEBHOOK_CONFIG, host)
        return problem[0] is None

    try:
        await eventually(served, timeout=30, interval=0.5, what="the webhook")
    except AssertionError:
        pytest.fail(f"{WEBHOOK_NOT_SERVED}: {problem[0]}", pytrace=False)


async def test_operator_pod_runs_with_its_service_account_and_serves_on_its_pod_ip(
    rawkube: Kube, release: HelmRelease, chart_operator: ChartOperator, apps_namespace: str
) -> None:
    metrics_port, webhook_port, snapshot_port = await _install_for_a_run(release)
    op = await chart_operator.start(release.namespace, release.name, metrics_port, webhook_port)
    assert not ipaddress.ip_address(op.ip).is_loopback, (
        f"the pod's IP {op.ip} is loopback, which EndpointSlices refuse: this host has no "
        "other address (see stash_dev.podips)"
    )
    # The Service leads to that address: where the apiserver will send admission calls.
    expected = {
        op.ip: {
            "https-webhook": webhook_port,
            "metrics": metrics_port,
            "https-snapshots": snapshot_port,
        }
    }

    async def routed() -> bool:
        return await endpoints(rawkube, release.namespace, OPERATOR) == expected

    await eventually(routed, timeout=30, what=f"EndpointSlices of {OPERATOR} -> {op.ip}")

    async def leader() -> str | None:
        try:
            lease = await rawkube.get(LEASES, OPERATOR, release.namespace)
        except KubeError:
            return None
        return (lease.get("spec") or {}).get("holderIdentity")

    holder = await eventually(leader, timeout=30, what=f"Lease {OPERATOR} held")
    assert holder

    await _expect_webhook(release, op)
    # The apiserver calls the validating webhook through the Service: an invalid
    # Repository (no backend) is refused by it, not by the CRD schema.
    bad = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "no-backend"},
        "spec": {"backend": {"storageSecretName": "s"}},
    }
    with pytest.raises(KubeError) as refused:
        await rawkube.create(REPOSITORIES, bad, apps_namespace)
    assert "repository.admission.stash.appscode.com" in str(refused.value), refused.value

    # The Snapshot API, under the chart's RBAC (the front-proxy CA read from kube-system,
    # SubjectAccessReviews, the APIService's caBundle): the aggregator finds it available
    # and real kubectl gets its answer through the apiserver.
    await eventually(lambda: _available(rawkube), timeout=60, what="the APIService Available")
    listed = await asyncio.to_thread(
        kubectl, release.kubeconfig, "get", "snapshots", "-n", apps_namespace
    )
    assert listed.returncode == 0 and "No resources found" in listed.stderr, listed.stderr


def _restore_session(restic_bin: str) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "restore"},
        "spec": {
            "repository": {"name": "repo"},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "rules": [{"paths": ["/data"]}],
            },
            "runtimeSettings": {"container": {"env": agent_env(restic_bin)}},
        },
    }


async def _restore_final(kube: Kube, ns: str) -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(RESTORESESSIONS, "restore", ns)
        final = (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Unknown")
        return obj if final else None

    return await eventually(probe, timeout=90, what="RestoreSession final")


async def test_backup_and_restore_through_the_charts_service_and_rbac(
    rawkube: Kube,
    release: HelmRelease,
    chart_operator: ChartOperator,
    apps_namespace: str,
    restic_bin: str,
    tmp_path: Path,
) -> None:
    await _serving_operator(release, chart_operator)
    ns = apps_namespace  # the webhooks leave the release's own namespace alone
    await rawkube.create(SECRETS, secret(), ns)
    await rawkube.create(REPOSITORIES, local_repository(tmp_path / "repo"), ns)
    await rawkube.create(BACKUPCONFIGURATIONS, backup_configuration(restic_bin), ns)
    created = await rawkube.create(DEPLOYMENTS, deployment(), ns)
    names = [c["name"] for c in created["spec"]["template"]["spec"]["containers"]]
    assert "stash" in names, (
        "the Deployment was admitted without the sidecar: the apiserver did not get it "
        f"from the webhook behind the chart's Service ({names})"
    )

    await ready_invoker(rawkube, ns)
    (pod,) = await injected_pods(rawkube, ns, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"db/table.bin": os.urandom(100_000), "conf/app.yaml": b"replicas: 1\n"})
    original = read_tree(data)
    runner = PodRunner(rawkube, tmp_path / "agent-pods")
    try:
        sidecar = await runner.run(pod, "stash", volumes={"data": data})
        session = await finished(rawkube, ns, await trigger(rawkube, ns), logs=[sidecar])
        assert session["status"]["phase"] == "Succeeded", (session["status"], sidecar.logs())
        await sidecar.stop(grace=5)

        await rawkube.create(RESTORESESSIONS, _restore_session(restic_bin), ns)
        (pod,) = await injected_pods(rawkube, ns, "web", "stash-init")
        empty = tmp_path / "new-volume"
        empty.mkdir()
        init = await runner.run(pod, "stash-init", volumes={"data": empty})
        assert await init.wait(120) == 0, init.logs()
        assert read_tree(empty) == original
        restore = await _restore_final(rawkube, ns)
        assert restore["status"]["phase"] == "Succeeded", restore["status"]
    finally:
        await runner.close()
