"""Objects written from Stash's own guides, in our words: the same shapes (kinds, fields,
replica counts, volume kinds, rules), our names and paths.

Guides (stashed/docs, `docs/guides/...`): `workloads/deployment`, `workloads/statefulset`
(including "Customize Restore Process"), `workloads/daemonset`, `volumes/pvc`. Every
builder names the guide example it follows. What differs from a guide, on purpose and
for every case (docs/compatibility.md "Stash's guides as a test suite"):

* the Repository's backend is `local` (a hostPath on this machine, which is the node)
  instead of GCS; the guides' backends are covered by the backend tests;
* `runtimeSettings.container.env` puts the project's `stash` and the test restic on PATH
  (what the image's ENV does; there are no images here) and job-model pods run as root
  (this host's Python lives under /root);
* the pods' own commands (`echo ... > data.txt`) are not run: the test writes what they
  would have written into the volume, and runs only the injected containers.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from stash.cli.kubectl.invokers import backup_invoker_named
from stash.contract.resources import RESTORESESSIONS
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Kube, NotFound, Resource
from stash.kube.resources import PVCS, PVS
from stash_dev.podrunner import RunningContainer
from tests.integration.agent.conftest import LOCAL_MOUNT, PASSWORD, agent_env
from tests.support.cluster import eventually

STORAGE_SECRET = "compat-secret"
SERVICES = Resource("", "v1", "services", "Service")


def storage_secret() -> JSON:
    """The guides' storage Secret (`gcs-secret`), with only RESTIC_PASSWORD for local."""
    return {"metadata": {"name": STORAGE_SECRET}, "stringData": {"RESTIC_PASSWORD": PASSWORD}}


def repository(name: str, host_dir: Path, sub_path: str) -> JSON:
    """`examples/repository.yaml` of each guide, on a local backend (module docstring)."""
    host_dir.mkdir(parents=True, exist_ok=True)
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": name},
        "spec": {
            "backend": {
                "local": {
                    "hostPath": {"path": str(host_dir)},
                    "mountPath": LOCAL_MOUNT,
                    "subPath": sub_path,
                },
                "storageSecretName": STORAGE_SECRET,
            }
        },
    }


def runtime(restic_bin: str, *, job: bool = False) -> JSON:
    """The runtimeSettings the test adds to every invoker (module docstring)."""
    out: JSON = {"container": {"env": agent_env(restic_bin)}}
    if job:
        out["pod"] = {"securityContext": {"runAsUser": 0}}
    return out


def workload_backup(
    name: str, kind: str, target: str, repo: str, volume: str, path: str, restic_bin: str
) -> JSON:
    """`examples/backupconfiguration.yaml` of the workload guides: every 5 minutes,
    one volume mounted at one path, keep the last 5 and prune."""
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": name},
        "spec": {
            "repository": {"name": repo},
            "schedule": "*/5 * * * *",
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": kind, "name": target},
                "volumeMounts": [{"name": volume, "mountPath": path}],
                "paths": [path],
            },
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            "runtimeSettings": runtime(restic_bin),
        },
    }


def workload_restore(
    name: str,
    kind: str,
    target: str,
    repo: str,
    volume: str,
    path: str,
    restic_bin: str,
    rules: list[JSON] | None = None,
) -> JSON:
    """`examples/restoresession.yaml` of the workload guides: the recovered workload's
    volume at the backed-up path, one rule with that path (or the given rules)."""
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": name},
        "spec": {
            "repository": {"name": repo},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": kind, "name": target},
                "volumeMounts": [{"name": volume, "mountPath": path}],
                "rules": rules if rules is not None else [{"paths": [path]}],
            },
            "runtimeSettings": runtime(restic_bin),
        },
    }


def busybox_template(app: str, volume: JSON, path: str, **container: Any) -> JSON:
    """The guides' pod template: one busybox container with the volume at `path`."""
    return {
        "metadata": {"labels": {"app": app}, "name": "busybox"},
        "spec": {
            "containers": [
                {
                    "name": "busybox",
                    "image": "busybox",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": volume["name"], "mountPath": path}],
                    **container,
                }
            ],
            "restartPolicy": "Always",
            "volumes": [volume],
        },
    }


def headless_service(name: str, app: str) -> JSON:
    """The StatefulSet guide's headless Service."""
    return {
        "metadata": {"name": name},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": app},
            "ports": [{"name": "http", "port": 80, "targetPort": 0}],
        },
    }


def statefulset_with_claims(name: str, replicas: int, volume: str, path: str) -> JSON:
    """`statefulset.yaml` / `recovered_statefulset.yaml` / `adv_statefulset.yaml`: the
    volume comes from a volumeClaimTemplate (storageClassName `standard`, 1Gi RWO)."""
    template = busybox_template(name, {"name": volume, "emptyDir": {}}, path)
    template["spec"].pop("volumes")
    template["spec"].pop("restartPolicy")
    template["metadata"].pop("name")
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "serviceName": f"{name}-headless",
            "selector": {"matchLabels": {"app": name}},
            "template": template,
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": volume},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "standard",
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }


async def trigger(kube: Kube, ns: str, name: str) -> str:
    """What `kubectl stash trigger <name>` does: a BackupSession now."""
    invoker = await backup_invoker_named(kube, name, ns)
    return await create_backup_session(kube, invoker, dt.datetime.now(dt.UTC))


async def restore_final(
    kube: Kube, ns: str, name: str, logs: list[RunningContainer] = (), timeout: float = 90
) -> JSON:
    """The RestoreSession once its phase is final; the agents' logs on timeout."""

    async def probe() -> JSON | None:
        obj = await kube.get(RESTORESESSIONS, name, ns)
        final = (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Unknown")
        return obj if final else None

    try:
        return await eventually(probe, timeout=timeout, interval=0.5, what=f"{name} final")
    except AssertionError as exc:
        tails = "\n".join(f"--- {h.pod_key}/{h.container}\n{h.logs()[-3000:]}" for h in logs)
        raise AssertionError(f"{exc}\n{tails}") from None


async def claim_path(kube: Kube, ns: str, claim: str) -> Path:
    """The host directory of claim `claim` once it exists and is bound (a StatefulSet's
    controller creates its claims some time after the StatefulSet)."""

    async def bound() -> JSON | None:
        try:
            pvc = await kube.get(PVCS, claim, ns)
        except NotFound:
            return None
        return pvc if (pvc.get("status") or {}).get("phase") == "Bound" else None

    pvc = await eventually(bound, timeout=60, what=f"PVC {claim} bound")
    pv = await kube.get(PVS, pvc["spec"]["volumeName"])
    return Path(pv["spec"]["hostPath"]["path"])


def restore_stats(obj: JSON) -> dict[str, JSON]:
    """hostname -> the RestoreSession's stats entry."""
    return {h["hostname"]: h for h in (obj.get("status") or {}).get("stats") or []}
