"""Fixtures for operator tests: objects a user would write, and an operator to run them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash.operator import Operator
from stash.settings import OperatorSettings
from stash_dev import ControlPlane


def secret(name: str = "repo-secret") -> JSON:
    return {"metadata": {"name": name}, "stringData": {"RESTIC_PASSWORD": "not-logged"}}


def repository(name: str = "repo", secret_name: str = "repo-secret") -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name},
        "spec": {
            "backend": {
                "local": {"hostPath": {"path": "/var/backups"}, "mountPath": "/safe/data"},
                "storageSecretName": secret_name,
            }
        },
    }


def deployment(name: str = "web") -> JSON:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "app", "image": "busybox"}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    }


def backup_configuration(name: str = "bc", schedule: str = "*/5 * * * *", **spec: Any) -> JSON:
    body: JSON = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "repository": {"name": "repo"},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "paths": ["/data"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
        },
    }
    body["spec"].update(spec)
    return body


async def create_world(kube: Kube, ns: str, **bc_spec: Any) -> JSON:
    """Secret, Repository, Deployment and a BackupConfiguration `bc` in `ns`."""
    await kube.create(SECRETS, secret(), ns)
    await kube.create(REPOSITORIES, repository(), ns)
    await kube.create(DEPLOYMENTS, deployment(), ns)
    return await kube.create(BACKUPCONFIGURATIONS, backup_configuration(**bc_spec), ns)


@pytest.fixture
async def rawkube(control_plane: ControlPlane) -> AsyncIterator[Kube]:
    kube = await Kube.connect(control_plane.kubeconfig)
    yield kube
    await kube.close()


OperatorFactory = Callable[..., Awaitable[Operator]]


@pytest.fixture
async def run_operator(
    control_plane: ControlPlane, stash_crds: list[str], namespace: str
) -> AsyncIterator[OperatorFactory]:
    """Start operators in this event loop, watching the test's namespace only."""
    tasks: list[asyncio.Task[None]] = []
    clients: list[Kube] = []

    async def start(**overrides: Any) -> Operator:
        kube = await Kube.connect(control_plane.kubeconfig)
        clients.append(kube)
        overrides.setdefault("serve_webhook", False)  # tests that want it say so
        overrides.setdefault("serve_snapshot_api", False)
        overrides.setdefault("namespace", namespace)
        overrides.setdefault("watch_namespace", namespace)  # None: every namespace
        settings = OperatorSettings(
            metrics_port=0,
            metrics_host="127.0.0.1",
            lease_duration=4,
            renew_deadline=3,
            retry_period=0.5,
            **overrides,
        )
        op = Operator(kube, settings)
        tasks.append(asyncio.create_task(op.run()))
        await asyncio.wait_for(op.ready.wait(), 30)
        return op

    yield start
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
    for k in clients:
        await k.close()
