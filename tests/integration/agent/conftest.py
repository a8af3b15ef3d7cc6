"""Fixtures for agent tests: the operator, real storage, and injected containers run locally.

A test writes what a user writes (a storage Secret, a Repository, a workload, a
BackupConfiguration or RestoreSession), lets the operator inject the agent into the
workload, then runs the injected container of a real Pod with the pod runner: its exact
command and args, its env, its volumes at their mountPaths, its ServiceAccount token
with only the agent ClusterRoles bound. There are no images here, so the
BackupConfiguration's `runtimeSettings.container.env` puts the project's venv and the
test restic on PATH — what an image's ENV would do.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stash.contract.rbac import HOOK_EXEC_ROLE, agent_cluster_roles
from stash.contract.resources import BACKUPCONFIGURATIONS, BACKUPSESSIONS, REPOSITORIES
from stash.controllers.trigger import create_backup_session
from stash.kube.client import JSON, Conflict, Kube, Resource
from stash.kube.resources import PODS
from stash.restic import Restic, ResticOptions, restic_target
from stash_dev.podrunner import PodRunner, RunningContainer
from tests.integration.operator.conftest import rawkube, run_operator  # noqa: F401
from tests.support.cluster import eventually

CLUSTER_ROLES = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False
)
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWORD = "correct horse battery staple"
LOCAL_MOUNT = "/safe/repo"
FINAL = ("Succeeded", "Failed", "Skipped")


def agent_env(restic_bin: str, **extra: str) -> list[JSON]:
    """Container env that stands in for the agent image's ENV (PATH to stash and restic)."""
    venv_bin = Path(sys.executable).parent
    path = f"{venv_bin}:{Path(restic_bin).parent}:{DEFAULT_PATH}"
    env = [{"name": "PATH", "value": path}, {"name": "STASH_BACKEND_TIMEOUT", "value": "5"}]
    return env + [{"name": k, "value": v} for k, v in extra.items()]


@pytest.fixture
async def agent_rbac(rawkube: Kube, namespace: str) -> None:  # noqa: F811
    """The agent ClusterRoles installed, and bound to the namespace's `default` account
    (all but `stash-hook-exec`: the operator binds that one only for exec hooks)."""
    for role in agent_cluster_roles():
        try:
            await rawkube.create(CLUSTER_ROLES, role)
        except Conflict:
            live = await rawkube.get(CLUSTER_ROLES, role["metadata"]["name"])
            role["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            await rawkube.replace(CLUSTER_ROLES, role)
    for role in agent_cluster_roles():
        name = role["metadata"]["name"]
        if name == HOOK_EXEC_ROLE:
            continue
        binding = {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        }
        await rawkube.create(ROLE_BINDINGS, binding, namespace)


@pytest.fixture
async def runner(rawkube: Kube, tmp_path: Path) -> AsyncIterator[PodRunner]:  # noqa: F811
    """A pod runner whose volumes and logs live under the test's tmp_path."""
    pods = PodRunner(rawkube, tmp_path / "pods")
    yield pods
    await pods.close()


# ------------------------------------------------------------------ objects users write


def secret(password: str = PASSWORD, **keys: str) -> JSON:
    return {
        "metadata": {"name": "repo-secret"},
        "stringData": {"RESTIC_PASSWORD": password, **keys},
    }


def local_repository(host_dir: Path) -> JSON:
    """A local-backend Repository whose volume is a hostPath (this host is the node)."""
    host_dir.mkdir(parents=True, exist_ok=True)
    return _repository({"local": {"hostPath": {"path": str(host_dir)}, "mountPath": LOCAL_MOUNT}})


def _repository(backend: JSON) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo"},
        "spec": {"backend": {**backend, "storageSecretName": "repo-secret"}},
    }


def repository_for(backend: JSON) -> JSON:
    """A Repository with this backend spec (without storageSecretName)."""
    return _repository(backend)


def pod_template(app: str) -> JSON:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


def deployment(name: str = "web") -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name),
        },
    }


def statefulset(name: str = "db", replicas: int = 3) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name),
        },
    }


def backup_configuration(
    restic_bin: str,
    *,
    kind: str = "Deployment",
    target: str = "web",
    paths: list[str] | None = None,
    keep_last: int = 5,
    args: list[str] | None = None,
) -> JSON:
    spec: JSON = {
        "schedule": "0 0 1 1 *",  # never fires during a test; sessions are triggered
        "repository": {"name": "repo"},
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": kind, "name": target},
            "paths": paths or ["/data"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
        "retentionPolicy": {"name": f"keep-last-{keep_last}", "keepLast": keep_last, "prune": True},
        "runtimeSettings": {"container": {"env": agent_env(restic_bin)}},
    }
    if args:
        spec["target"]["args"] = args
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "bc"},
        "spec": spec,
    }


async def create_objects(kube: Kube, ns: str, resources: list[tuple[Resource, JSON]]) -> None:
    for res, body in resources:
        await kube.create(res, body, ns)


# ------------------------------------------------------------------ waiting and acting


async def ready_invoker(kube: Kube, ns: str, name: str = "bc") -> JSON:
    async def probe() -> JSON | None:
        obj = await kube.get(BACKUPCONFIGURATIONS, name, ns)
        return obj if (obj.get("status") or {}).get("phase") == "Ready" else None

    return await eventually(probe, timeout=60, what=f"BackupConfiguration {name} Ready")


async def injected_pods(
    kube: Kube, ns: str, app: str, container: str, count: int = 1
) -> list[JSON]:
    """`count` scheduled, live pods of `app` that carry the injected `container`."""

    def has(pod: JSON) -> bool:
        spec = pod["spec"]
        names = [c["name"] for c in [*spec.get("containers", []), *spec.get("initContainers", [])]]
        return container in names

    async def probe() -> list[JSON] | None:
        pods = (await kube.list(PODS, ns, label_selector=f"app={app}"))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        good = [p for p in live if has(p) and p["spec"].get("nodeName")]
        # The rollout is over when every live pod carries the container.
        if len(good) == count and len(live) == count:
            return sorted(good, key=lambda p: p["metadata"]["name"])
        return None

    return await eventually(probe, timeout=90, what=f"{count} pod(s) of {app} with {container}")


async def trigger(kube: Kube, ns: str, offset: int = 0) -> str:
    """Create a BackupSession of `bc` as `kubectl stash trigger` would."""
    bc = await kube.get(BACKUPCONFIGURATIONS, "bc", ns)
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    return await create_backup_session(kube, bc, when)


async def finished(
    kube: Kube, ns: str, name: str, timeout: float = 120, logs: list[RunningContainer] = ()
) -> JSON:
    """The session once final; on timeout the agents' logs are in the failure."""

    async def probe() -> JSON | None:
        obj = await kube.get(BACKUPSESSIONS, name, ns)
        return obj if (obj.get("status") or {}).get("phase") in FINAL else None

    try:
        return await eventually(probe, timeout=timeout, interval=0.5, what=f"{name} final")
    except AssertionError as exc:
        tails = "\n".join(f"--- {h.pod_key}/{h.container}\n{h.logs()[-4000:]}" for h in logs)
        raise AssertionError(f"{exc}\n{tails}") from None


def condition(obj: JSON, kind: str) -> JSON:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    raise AssertionError(f"no condition {kind} in {obj.get('status')}")


def host_stats(obj: JSON) -> dict[str, JSON]:
    """hostname -> stats entry of the session's first target."""
    target = ((obj.get("status") or {}).get("targets") or [{}])[0]
    return {h["hostname"]: h for h in target.get("stats") or []}


def host_restic(
    backend: JSON, restic_bin: str, scratch: Path, password: str = PASSWORD, **secret_keys: str
) -> Restic:
    """A restic driver on the test host for the repository (to check what is stored)."""
    from stash.api.repository import Backend

    scratch.mkdir(parents=True, exist_ok=True)
    data = {"RESTIC_PASSWORD": password, **secret_keys}
    target = restic_target(
        Backend.model_validate({"storageSecretName": "repo-secret", **backend}),
        data,
        scratch_dir=scratch,
    )
    return Restic(
        target,
        ResticOptions(
            binary=restic_bin, scratch_dir=str(scratch), no_cache=True, unreachable_timeout=5.0
        ),
    )


async def repository_status(kube: Kube, ns: str) -> JSON:
    return dict((await kube.get(REPOSITORIES, "repo", ns)).get("status") or {})


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def read_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


async def grant_repository(
    kube: Kube, ns: str, invoker_kind: str, invoker_name: str, sa: str = "default"
) -> None:
    """What the operator applies for an invoker's agent (`controllers.access`): `get` on
    exactly the Repository `repo` and its storage Secret, for ServiceAccount `sa`. For
    step commands a test runs itself, outside a Job the operator provisioned."""
    from stash.api import Repository
    from stash.controllers.access import repository_grant
    from stash.kube.resources import ROLEBINDINGS, ROLES

    repository = Repository.model_validate(await kube.get(REPOSITORIES, "repo", ns))
    role, binding = repository_grant(invoker_kind, ns, invoker_name, repository, sa)
    await kube.create(ROLES, role, ns)
    await kube.create(ROLEBINDINGS, binding, ns)
