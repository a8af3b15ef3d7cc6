"""Repository commands on a local backend: run in a short-lived Job that mounts the volume.

What it is for: a local backend is a volume only pods can mount, so `kubectl stash
snapshots|check|unlock|delete snapshot|key ...` on such a Repository creates a Job in
its namespace whose one container runs the same command (`kubectl-stash ...
--local-repository PATH`) with the backend's volume mounted at its mountPath (and
subPath) and `RESTIC_PASSWORD` taken from the storage Secret by reference (the plugin
never copies it). The plugin waits for the pod, streams its output, waits for the Job
to finish, deletes the Job (and its pod) whatever happened, and exits with the
container's exit code. Inside the pod, `--local-repository` opens the repository at
PATH without the API (`local_target`). Input that is a file on this machine (a new
password) goes to the container as an environment variable from a Secret made for the
Job and deleted with it.

The Job runs the stash image (`--image`, default `stash:<plugin version>`, the image the
operator's agents run); `--job-env NAME=VALUE` adds environment to its container (a
proxy, a PATH). A Job whose output the node cannot serve still finishes; its exit code
decides, and the plugin says the output was not available.

Not for: remote backends (restic runs on this machine: `access`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stash import __version__
from stash.api.repository import Backend
from stash.cli.kubectl.plugin import Plugin, PluginError
from stash.kube.client import JSON, KubeError, NotFound
from stash.kube.resources import JOBS, PODS, SECRETS
from stash.restic import ResticTarget, restic_target

__all__ = [
    "LOCAL_FLAG",
    "add_job_flags",
    "container_exit_code",
    "inner_argv",
    "job_manifest",
    "job_pod",
    "local_target",
    "run_job",
]

LOCAL_FLAG = "--local-repository"
_STRIPPED = ("--kubeconfig", "--context", "--namespace", "-n", "--restic", "--image", "--job-env")
_STRIPPED_ALONE = ("--job-timeout",)
_LABELS = {
    "app.kubernetes.io/managed-by": "stash.appscode.com",
    "app.kubernetes.io/component": "kubectl-stash",
}


def add_job_flags(parser: Any) -> None:
    """Add the flags of the Job a local-backend command runs in."""
    parser.add_argument(LOCAL_FLAG, dest="local_repository", help=argparse.SUPPRESS)
    parser.add_argument("--image", default=f"stash:{__version__}", help="image of the Job")
    parser.add_argument(
        "--job-env", action="append", default=[], help="NAME=VALUE for the Job (repeatable)"
    )
    parser.add_argument("--job-timeout", type=float, default=600, help="seconds the Job may run")


def inner_argv(argv: Sequence[str], strip: Sequence[str] = ()) -> list[str]:
    """The command line the Job's container runs: `argv` without the flags about where
    and how to reach the cluster or run the Job (and without the `strip` flags, which
    take a value, e.g. a file on this machine the caller hands over another way)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _STRIPPED or name in strip:
            skip = "=" not in arg
            continue
        if name in _STRIPPED_ALONE:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def local_target(path: str, password: str | None = None) -> ResticTarget:
    """The repository at `path` in this pod, opened with `password`, else the one in
    `RESTIC_PASSWORD`."""
    password = password or os.environ.get("RESTIC_PASSWORD")
    if not password:
        raise PluginError(f"{LOCAL_FLAG} needs RESTIC_PASSWORD in the environment")
    if not os.path.isdir(path):
        raise PluginError(f"{path} is not mounted in this pod: the repository is not there")
    backend = Backend.model_validate({"local": {"mountPath": path, "emptyDir": {}}})
    return restic_target(backend, {"RESTIC_PASSWORD": password}, scratch_dir=path)


def job_manifest(
    p: Plugin, repo: JSON, argv: Sequence[str], secret_env: Sequence[str] = ()
) -> JSON:
    """The Job that runs `argv` (the inner command) next to the Repository's volume;
    each of `secret_env` is an environment variable taken from the same-named key of a
    Secret named like the Job (`run_job` creates it)."""
    backend = repo["spec"]["backend"]
    local = dict(backend["local"])
    mount_path = str(local.pop("mountPath"))
    sub_path = local.pop("subPath", None)
    mount: JSON = {"name": "stash-local", "mountPath": mount_path}
    if sub_path:
        mount["subPath"] = sub_path
    env: list[JSON] = [
        {
            "name": "RESTIC_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {"name": backend["storageSecretName"], "key": "RESTIC_PASSWORD"}
            },
        }
    ]
    name = f"kubectl-stash-{p.args.command}-{secrets.token_hex(3)}"
    env += [
        {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": var}}}
        for var in secret_env
    ]
    for text in p.args.job_env:
        var, sep, value = str(text).partition("=")
        if not sep or not var:
            raise PluginError(f'--job-env "{text}" is not NAME=VALUE')
        env.append({"name": var, "value": value})
    container = {
        "name": "stash",
        "image": p.args.image,
        "command": ["kubectl-stash"],
        "args": [*argv, f"{LOCAL_FLAG}={mount_path}"],
        "env": env,
        "volumeMounts": [mount],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": p.namespace, "labels": dict(_LABELS)},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 300,
            "activeDeadlineSeconds": int(p.args.job_timeout),
            "template": {
                "metadata": {"labels": dict(_LABELS)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container],
                    "volumes": [{"name": "stash-local", **local}],
                },
            },
        },
    }


async def run_job(
    p: Plugin,
    repo: JSON,
    argv: Sequence[str],
    *,
    secret_env: Mapping[str, str] | None = None,
    strip: Sequence[str] = (),
    echo: Callable[[str], None] | None = None,
) -> int:
    """Run the inner command (`argv` through `inner_argv`) in a Job; stream its output
    (to `echo`, else stdout); clean up; its exit code. `secret_env` (name -> value,
    e.g. a new password) reaches the container through a Secret made for the Job and
    deleted with it, never through its spec."""
    secret_env = dict(secret_env or {})
    job = job_manifest(p, repo, inner_argv(argv, strip), list(secret_env))
    name = job["metadata"]["name"]
    if secret_env:
        secret = {"metadata": {"name": name, "labels": dict(_LABELS)}, "stringData": secret_env}
        await p.kube.create(SECRETS, secret, p.namespace)
    try:
        created = await p.kube.create(JOBS, job, p.namespace)
        p.note(f"running in Job {p.namespace}/{name} (the repository's volume is mounted there)")
        try:
            deadline = time.monotonic() + p.args.job_timeout
            pod = await job_pod(p, created, deadline)
            streamed = await _stream(p, pod, deadline, echo or p.say)
            code = await container_exit_code(p, pod["metadata"]["name"], deadline)
            if not streamed:
                p.note("(the Job's output is not available from its node; its exit code decides)")
            return code
        finally:
            await p.kube.delete(JOBS, name, p.namespace, propagation="Background")
    finally:
        if secret_env:
            await p.kube.delete(SECRETS, name, p.namespace)


async def job_pod(p: Plugin, job: JSON, deadline: float) -> JSON:
    """The Job's pod, once there is one (PluginError at the deadline)."""
    selector = f"controller-uid={job['metadata']['uid']}"
    while time.monotonic() < deadline:
        pods = (await p.kube.list(PODS, p.namespace, label_selector=selector))["items"]
        if pods:
            return dict(pods[0])
        await asyncio.sleep(0.5)
    raise PluginError(f"Job {job['metadata']['name']} started no pod: see `kubectl describe job`")


def _terminated(pod: JSON) -> JSON | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == "stash":
            found = (status.get("state") or {}).get("terminated")
            return dict(found) if found else None
    return None


def _started(pod: JSON) -> bool:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        if status.get("name") == "stash" and ("running" in state or "terminated" in state):
            return True
    return False


async def _stream(p: Plugin, pod: JSON, deadline: float, echo: Callable[[str], None]) -> bool:
    """Copy the container's output here once it started; False when the node has none."""
    name = pod["metadata"]["name"]
    while time.monotonic() < deadline:
        try:
            pod = await p.kube.get(PODS, name, p.namespace)
        except NotFound:
            return False
        if _started(pod):
            break
        await asyncio.sleep(0.5)
    query = {"container": "stash", "follow": "true"}
    try:
        text = await p.kube.request(
            "GET",
            PODS.path(p.namespace, name, "log"),
            query=query,
            accept="*/*",
            timeout=max(deadline - time.monotonic(), 1.0),
        )
    except (KubeError, TimeoutError):
        return False
    if str(text).strip():
        echo(str(text).rstrip())
    return True


async def container_exit_code(p: Plugin, name: str, deadline: float) -> int:
    """The exit code of the pod's `stash` container, once it ended."""
    while time.monotonic() < deadline:
        pod = await p.kube.get(PODS, name, p.namespace)
        done = _terminated(pod)
        if done is not None:
            return int(done.get("exitCode", 1))
        await asyncio.sleep(0.5)
    raise PluginError(f"the Job's pod {name} did not finish in --job-timeout: see its events")
