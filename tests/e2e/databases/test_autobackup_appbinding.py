"""Auto-backup of an annotated AppBinding through the blueprint path (§3, §9): the
blueprint names `postgres-backup-${TARGET_APP_VERSION}`, the operator creates the
Repository and BackupConfiguration `app-db`, and a triggered session backs the
database up as one `/dumpfile.sql` snapshot — real control plane, server and restic."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from stash.cli.kubectl.invokers import backup_invoker_named
from stash.contract.resources import APPBINDINGS, BACKUPBLUEPRINTS, BACKUPCONFIGURATIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, NotFound
from stash.kube.resources import SECRETS
from stash_dev.podrunner import PodRunner
from tests.e2e.databases.world import World
from tests.integration.agent.conftest import PASSWORD, agent_env, finished
from tests.support.cluster import eventually
from tests.support.databases import PostgresServer
from tests.support.storage import RestServer

pytestmark = pytest.mark.cluster


@pytest.fixture
async def blueprint(
    rawkube: Kube, rest_server: RestServer, restic_bin: str, namespace: str
) -> AsyncIterator[str]:
    """A database blueprint on the rest-server; removed after the test."""
    name = f"db-bp-{namespace[-6:]}"
    await rawkube.create(
        BACKUPBLUEPRINTS,
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupBlueprint",
            "metadata": {"name": name},
            "spec": {
                "backend": {
                    "rest": {"url": f"{rest_server.url}/${{TARGET_NAMESPACE}}-${{TARGET_NAME}}"},
                    "storageSecretName": "repo-secret",
                },
                "task": {"name": "postgres-backup-${TARGET_APP_VERSION}"},
                "schedule": "0 3 * * *",
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                "runtimeSettings": {
                    "container": {"env": agent_env(restic_bin)},
                    "pod": {"securityContext": {"runAsUser": 0}},
                },
            },
        },
    )
    yield name
    with contextlib.suppress(NotFound):
        await rawkube.delete(BACKUPBLUEPRINTS, name)


async def test_annotated_appbinding_is_backed_up_by_its_addon_task(
    rawkube: Kube,
    run_operator,  # type: ignore[no-untyped-def]
    runner: PodRunner,
    rest_server: RestServer,
    restic_bin: str,
    namespace: str,
    postgres: PostgresServer,
    blueprint: str,
) -> None:
    await run_operator()
    await rawkube.create(
        SECRETS,
        {"metadata": {"name": "repo-secret"}, "stringData": {"RESTIC_PASSWORD": PASSWORD}},
        namespace,
    )
    await rawkube.create(
        SECRETS,
        {
            "metadata": {"name": "pg-auth"},
            "stringData": {"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": postgres.password},
        },
        namespace,
    )
    await rawkube.create(
        APPBINDINGS,
        {
            "apiVersion": "appcatalog.appscode.com/v1alpha1",
            "kind": "AppBinding",
            "metadata": {
                "name": "db",
                "annotations": {"stash.appscode.com/backup-blueprint": blueprint},
            },
            "spec": {
                "type": "kubedb.com/postgres",
                "version": "15",
                "clientConfig": {
                    "service": {"name": "ignored", "port": 1},
                    "url": f"postgres://127.0.0.1:{postgres.port}/postgres",
                },
                "secret": {"name": "pg-auth"},
            },
        },
        namespace,
    )

    async def ready() -> JSON | None:
        try:
            bc = await rawkube.get(BACKUPCONFIGURATIONS, "app-db", namespace)
        except NotFound:
            return None
        return bc if (bc.get("status") or {}).get("phase") == "Ready" else None

    bc = await eventually(ready, timeout=60, what="BackupConfiguration app-db Ready")
    assert bc["spec"]["task"]["name"] == "postgres-backup-15"
    invoker = await backup_invoker_named(rawkube, "app-db", namespace)
    session = await create_backup_session(rawkube, invoker, dt.datetime.now(dt.UTC))
    world = World(rawkube, runner, namespace, restic_bin, rest_server)
    await world.run_job(f"stash-backup-{session}-0")
    done = await finished(rawkube, namespace, session, timeout=60)
    assert done["status"]["phase"] == "Succeeded", (done["status"], world.logs)
    (snapshot,) = world.snapshots(f"rest:{rest_server.url}/{namespace}-db")
    assert snapshot["paths"] == ["/dumpfile.sql"] and snapshot["hostname"] == "host-0"
