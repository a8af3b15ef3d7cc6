"""The rendered chart against the real test apiserver (server-side dry run: the
apiserver's OpenAPI and CRD schemas, RBAC validation and Pod Security admission judge it,
nothing is created), in a namespace that enforces Pod Security `restricted`."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes_asyncio import client

from stash.kube.client import Kube
from tests.support.chart_tools import CHART, helm
from tests.support.helm_release import HelmRelease

if TYPE_CHECKING:  # the control plane's module is moving (devcluster); only its type is used
    from stash_dev import ControlPlane

# serial: the chart's cluster-scoped objects and webhooks
pytestmark = [pytest.mark.cluster, pytest.mark.serial]

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


async def _restricted(kube: client.ApiClient, namespace: str) -> None:
    await client.CoreV1Api(kube).patch_namespace(namespace, {"metadata": {"labels": RESTRICTED}})


async def _kubectl(
    kubectl: str, kubeconfig: Path, manifest: str, *args: str
) -> subprocess.CompletedProcess[str]:
    cmd = [kubectl, "--kubeconfig", str(kubeconfig), *args, "-f", "-"]
    return await asyncio.to_thread(
        subprocess.run, cmd, input=manifest, capture_output=True, text=True, timeout=120
    )


async def _template(*args: str) -> str:
    done = await asyncio.to_thread(helm, "template", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_chart_passes_a_server_side_dry_run_in_a_restricted_namespace(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    namespace: str,
    helm_bin: str,
    kubectl_bin: str,
) -> None:
    await _restricted(kube, namespace)
    manifest = await _template(
        "rel",
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
        "--set",
        "monitoring.grafanaDashboard.enabled=true",
    )
    done = await _kubectl(
        kubectl_bin, control_plane.kubeconfig, manifest, "apply", "--dry-run=server"
    )
    assert done.returncode == 0, done.stderr
    assert "PodSecurity" not in done.stderr, done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    assert len(lines) == len(docs)
    assert all(ln.endswith("(server dry run)") for ln in lines), done.stdout


async def test_operator_pod_is_admitted_under_restricted(
    control_plane: ControlPlane,
    kube: client.ApiClient,
    namespace: str,
    helm_bin: str,
    kubectl_bin: str,
) -> None:
    await _restricted(kube, namespace)
    rendered = await _template(
        "rel", str(CHART), "--namespace", namespace, "--show-only", "templates/deployment.yaml"
    )
    deploy: dict[str, Any] = yaml.safe_load(rendered)
    spec = deploy["spec"]["template"]["spec"]
    spec["serviceAccountName"] = "default"  # the chart's one is not created by a dry run
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator", "namespace": namespace},
        "spec": spec,
    }
    done = await _kubectl(
        kubectl_bin, control_plane.kubeconfig, yaml.safe_dump(pod), "create", "--dry-run=server"
    )
    assert done.returncode == 0, done.stderr
    assert "PodSecurity" not in done.stderr, done.stderr

    # The same check refuses a pod that breaks `restricted`, so the one above means something.
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    done = await _kubectl(
        kubectl_bin, control_plane.kubeconfig, yaml.safe_dump(pod), "create", "--dry-run=server"
    )
    assert done.returncode != 0
    assert "violates PodSecurity" in done.stderr


async def test_helm_install_dry_run_prints_the_next_steps(
    control_plane: ControlPlane, namespace: str, helm_bin: str
) -> None:
    # An in-process operator of an earlier test made the agent ClusterRoles without helm;
    # helm (also in a dry run) refuses to adopt them, as it would in a real cluster.
    kube = await Kube.connect(control_plane.kubeconfig)
    try:
        release = HelmRelease(kube, control_plane.kubeconfig, namespace, "rel")
        await release.clear_unowned(await release.template())
    finally:
        await kube.close()
    done = await asyncio.to_thread(
        helm,
        "install",
        "rel",
        str(CHART),
        "--namespace",
        namespace,
        "--kubeconfig",
        str(control_plane.kubeconfig),
        "--dry-run=server",
    )
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "BackupConfiguration" in notes
    assert f"rel-stash-operator.{namespace}.svc:8080/metrics" in notes
