"""What the metrics tests set up: a Deployment backed up by its injected sidecar and
restored by its injected init-container (both run by the pod runner), and the labels
§7.3 documents for each family.

Not for: assertions about metrics (the tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash.contract.resources import BACKUPCONFIGURATIONS, REPOSITORIES, RESTORESESSIONS
from stash.kube.client import JSON, Kube
from stash.kube.resources import DEPLOYMENTS, SECRETS
from stash.sessionmetrics import FAMILIES
from stash_dev.podrunner import PodRunner, RunningContainer
from tests.integration.agent.conftest import (
    agent_env,
    backup_configuration,
    create_objects,
    deployment,
    finished,
    injected_pods,
    ready_invoker,
    secret,
    trigger,
    write_tree,
)
from tests.support.cluster import eventually

INVOKER = {"invoker_kind", "invoker_name", "namespace", "driver", "repository"}
TARGET = INVOKER | {"kind", "group", "name"}
HOST = TARGET | {"hostname"}
REPOSITORY = INVOKER | {"name", "backend", "bucket", "prefix"}
#: The labels §7.3 gives each kind of family (docs/metrics.md).
LABELS = {
    "session": INVOKER,
    "target": TARGET,
    "host": HOST,
    "repository": REPOSITORY,
    "restore session": INVOKER,
    "restore target": TARGET,
    "restore host": HOST,
}


def names_of(*kinds: str) -> dict[str, str]:
    """Every metric name (both name sets) of these kinds of family -> its kind."""
    return {n: kind for kind in kinds for f in FAMILIES[kind] for n in f.names}


@dataclass
class Backup:
    """A finished backup: the session object and the sidecar that ran it."""

    session: JSON
    sidecar: RunningContainer


async def back_up(
    kube: Kube,
    ns: str,
    runner: PodRunner,
    restic_bin: str,
    tmp_path: Path,
    backend: JSON,
    secret_keys: dict[str, str] | None = None,
    schedule: str | None = None,
) -> Backup:
    """Create the world (Secret, Repository with `backend`, Deployment `web`, invoker
    `bc`), run the injected sidecar, and wait for a session to end: one triggered, or
    with `schedule` the first one the cron engine creates."""
    bc = backup_configuration(restic_bin)
    if schedule:
        bc["spec"]["schedule"] = schedule
    repo = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo"},
        "spec": {"backend": {**backend, "storageSecretName": "repo-secret"}},
    }
    await create_objects(
        kube,
        ns,
        [
            (SECRETS, secret(**(secret_keys or {}))),
            (REPOSITORIES, repo),
            (DEPLOYMENTS, deployment()),
            (BACKUPCONFIGURATIONS, bc),
        ],
    )
    await ready_invoker(kube, ns)
    (pod,) = await injected_pods(kube, ns, "web", "stash")
    data = tmp_path / "data"
    write_tree(data, {"db/table.bin": os.urandom(30_000), "conf/app.yaml": b"replicas: 1\n"})
    sidecar = await runner.run(pod, "stash", volumes={"data": data})
    if schedule:
        name = await _first_scheduled(kube, ns)
    else:
        name = await trigger(kube, ns)
    return Backup(await finished(kube, ns, name, logs=[sidecar]), sidecar)


async def _first_scheduled(kube: Kube, ns: str) -> str:
    from stash.contract.resources import BACKUPSESSIONS

    async def probe() -> str | None:
        items = (await kube.list(BACKUPSESSIONS, ns))["items"]
        names = sorted(i["metadata"]["name"] for i in items)
        return names[0] if names else None

    return await eventually(probe, timeout=90, what="a scheduled BackupSession")


def restore_session(restic_bin: str) -> JSON:
    """A RestoreSession of everything into the Deployment `web`."""
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


async def restore(
    kube: Kube, ns: str, runner: PodRunner, backup: Backup, restic_bin: str, tmp_path: Path
) -> JSON:
    """Stop the sidecar, create the RestoreSession, run the injected init-container into
    an empty volume; the RestoreSession once final."""
    await backup.sidecar.stop(grace=5)
    await kube.create(RESTORESESSIONS, restore_session(restic_bin), ns)
    (pod,) = await injected_pods(kube, ns, "web", "stash-init")
    empty = tmp_path / "restored"
    empty.mkdir()
    init = await runner.run(pod, "stash-init", volumes={"data": empty})
    assert await init.wait(120) == 0, init.logs()

    async def probe() -> JSON | None:
        obj = await kube.get(RESTORESESSIONS, "restore", ns)
        final = (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Unknown")
        return obj if final else None

    return await eventually(probe, timeout=60, what="RestoreSession final")


def condition(obj: JSON, kind: str) -> dict[str, Any]:
    """The condition `kind` of an object's status (fails when it has none)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    raise AssertionError(f"no condition {kind} in {obj.get('status')}")
