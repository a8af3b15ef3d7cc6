"""The pod runner: a scheduled Pod's containers as local processes, as its spec says.

For: turning one container of a Pod stored in the apiserver into a process: its command
and args (`$(VAR)` expanded), its environment (downward API, Secrets, ConfigMaps, the
`kubernetes` Service pointing at our apiserver), its volumes bind-mounted at their
mountPaths in a private mount namespace, its ServiceAccount token where in-cluster
config looks for it, its hostname and user; its process recorded for `kubectl exec`
(registry.py) while it runs; optionally its state reported back into the Pod's status.
Not for: image handling (there are no images; a container without `command` needs an
`entrypoints` entry for its image), restarts, probes, lifecycle hooks, resource limits,
or network isolation: every process shares the host's network;
the pod's IP (`status.podIP`, an address of this host the stand-in kubelet gave it,
waited for before a container starts) reaches a process bound to it or to 0.0.0.0.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stash.kube.client import Kube, NotFound
from stash_dev.podrunner import status
from stash_dev.podrunner.environment import container_env, runtime_env, service_env
from stash_dev.podrunner.expansion import expand
from stash_dev.podrunner.image import image_roots, traversal_dirs
from stash_dev.podrunner.objects import PODS, PodObjects, PodRunnerError
from stash_dev.podrunner.process import (
    START_ERROR_EXIT,
    RunningContainer,
    namespace_support,
    spawn,
)
from stash_dev.podrunner.registry import ContainerRegistry
from stash_dev.podrunner.serviceaccount import (
    automount,
    service_account_name,
    with_token_volume,
)
from stash_dev.podrunner.volumes import PodVolumes

JSON = dict[str, Any]

log = logging.getLogger("stash_dev.podrunner")


class _Sandbox:
    """What one pod's containers share: its directory, volumes and identity."""

    def __init__(self, pod: JSON, directory: Path, volumes: PodVolumes) -> None:
        self.pod = pod
        self.directory = directory
        self.volumes = volumes
        self.runs = 0


class PodRunner:
    """Runs containers of Pods from one apiserver as local processes (as root)."""

    def __init__(
        self,
        kube: Kube,
        work_dir: Path | None = None,
        *,
        entrypoints: Mapping[str, Sequence[str]] | None = None,
        service_host: str = "127.0.0.1",
        service_port: int | None = None,
        ref_timeout: float = 30.0,
    ) -> None:
        """`kube` reads what pods refer to and issues tokens (a kubelet's credentials).

        `work_dir` holds volumes and logs (a temporary directory, removed by `close()`,
        when None); `entrypoints` maps an image to its ENTRYPOINT argv, used when a
        container has no `command`; the `kubernetes` Service env points at
        `service_host`:`service_port` (default: the port `kube` talks to);
        `ref_timeout` is how long a missing Secret/ConfigMap/ServiceAccount is waited for.
        """
        self.kube = kube
        self._own_dir = work_dir is None
        self.work_dir = (
            Path(tempfile.mkdtemp(prefix="stash-pods-")) if work_dir is None else work_dir
        )
        self.entrypoints = {k: list(v) for k, v in (entrypoints or {}).items()}
        url = urlparse(kube.host)
        self.service_host = service_host
        self.service_port = service_port or url.port or 443
        self.ref_timeout = ref_timeout
        self._sandboxes: dict[str, _Sandbox] = {}
        self._sandbox_lock = asyncio.Lock()
        self._running: list[RunningContainer] = []
        self.registry = ContainerRegistry()

    async def run(
        self,
        pod: Mapping[str, Any],
        container: str,
        *,
        volumes: Mapping[str, Path] | None = None,
        report_status: bool = False,
    ) -> RunningContainer:
        """Start `container` (a main or init container) of the scheduled `pod`.

        `volumes` maps volume names to local paths (needed for PVCs and other volumes
        the runner cannot make). Returns once the container's process has exec'd;
        raises PodRunnerError, naming the cause, when it cannot start. With
        `report_status`, the container's running and terminated states (and the phase
        that follows) are written to the Pod's status.
        """
        reason = namespace_support()
        if reason:
            raise PodRunnerError(reason)
        current = await status.with_pod_ip(self.kube, await self._current(pod))
        async with self._sandbox_lock:
            box = await self._sandbox(current, volumes or {})
        spec, init = _container(box.pod, container)
        objects = PodObjects(self.kube, current["metadata"]["namespace"], self.ref_timeout)
        kenv = await container_env(
            box.pod, spec, objects, service_env(self.service_host, self.service_port)
        )
        argv = self._argv(spec, kenv)
        env = {**runtime_env(box.pod), **kenv}
        user = _user(box.pod, spec)
        plan = {
            "argv": argv,
            "env": env,
            "mounts": [asdict(m) for m in await box.volumes.mounts(spec, kenv)],
            "working_dir": spec.get("workingDir") or "/",
            "hostname": runtime_env(box.pod)["HOSTNAME"],
            "user": user,
            "traversable": traversal_dirs(argv[0], env, user["uid"]),
            "image": image_roots(argv[0], env),
            "staging": str(self._staging(box, container)),
        }
        log_path = box.directory / f"{container}.log"
        if report_status:
            await status.wait_until_started(self.kube, current)
        started = status.now()
        try:
            proc = await spawn(plan, log_path)
        except PodRunnerError as exc:
            if report_status:
                state = status.terminated_state(START_ERROR_EXIT, started, str(exc))
                try:
                    await status.report(self.kube, current, spec, init, state, None)
                except Exception as report_exc:  # the start error is what the caller needs
                    log.warning("%s: reporting StartError failed: %s", _key(current), report_exc)
            raise PodRunnerError(f"{_key(current)} container {container!r}: {exc}") from None
        uid = str(current["metadata"]["uid"])
        self.registry.record(uid, container, proc.pid)  # found there by `kubectl exec`
        if report_status:
            await status.report(
                self.kube, current, spec, init, status.running_state(started), proc.pid
            )

        async def on_exit(code: int) -> None:
            self.registry.forget(uid, container, proc.pid)
            if report_status:
                state = status.terminated_state(code, started)
                await status.report(self.kube, current, spec, init, state, proc.pid)

        handle = RunningContainer(_key(current), container, proc, log_path, on_exit)
        self._running.append(handle)
        return handle

    async def run_pod(
        self,
        pod: Mapping[str, Any],
        *,
        volumes: Mapping[str, Path] | None = None,
        report_status: bool = False,
    ) -> list[RunningContainer]:
        """Run the init containers in order (each to success), then start the main ones.

        Init containers with `restartPolicy: Always` (native sidecars) are started and
        left running. Returns the handles of everything still running. An init container
        that exits non-zero raises PodRunnerError with its log's path.
        """
        spec = pod.get("spec", {})
        handles: list[RunningContainer] = []
        for c in spec.get("initContainers") or []:
            handle = await self.run(pod, c["name"], volumes=volumes, report_status=report_status)
            if c.get("restartPolicy") == "Always":
                handles.append(handle)
                continue
            code = await handle.wait()
            if code != 0:
                for h in handles:
                    await h.stop(grace=5)
                raise PodRunnerError(
                    f"{_key(pod)} init container {c['name']!r} exited {code}; "
                    f"log: {handle.log_path}"
                )
        for c in spec.get("containers") or []:
            handles.append(
                await self.run(pod, c["name"], volumes=volumes, report_status=report_status)
            )
        return handles

    def pod_dir(self, pod: Mapping[str, Any]) -> Path:
        """Where the runner keeps `pod`'s volumes and container logs."""
        meta = pod["metadata"]
        return self.work_dir / f"{meta['namespace']}_{meta['name']}_{meta.get('uid', '')}"

    async def release(self, pod: Mapping[str, Any]) -> None:
        """Stop what still runs of `pod` and delete its volumes (its logs stay)."""
        key = _key(pod)
        for handle in [h for h in self._running if h.pod_key == key]:
            await handle.stop(grace=5)
        box = self._sandboxes.pop(str(pod["metadata"].get("uid")), None)
        if box is not None:
            shutil.rmtree(box.directory / "volumes", ignore_errors=True)
            shutil.rmtree(box.directory / "roots", ignore_errors=True)

    async def close(self) -> None:
        """Kill every container still running and remove a work dir the runner made."""
        for handle in self._running:
            handle.kill()
        for handle in self._running:
            await handle.wait()
        self._running.clear()
        self._sandboxes.clear()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # ----------------------------------------------------------------- internals
    async def _current(self, pod: Mapping[str, Any]) -> JSON:
        meta = pod["metadata"]
        try:
            current = await self.kube.get(PODS, meta["name"], meta["namespace"])
        except NotFound:
            raise PodRunnerError(f"pod {_key(pod)} does not exist") from None
        if meta.get("uid") and current["metadata"]["uid"] != meta["uid"]:
            raise PodRunnerError(f"pod {_key(pod)} was replaced by a new one (uid changed)")
        if current["metadata"].get("deletionTimestamp"):
            raise PodRunnerError(f"pod {_key(pod)} is being deleted")
        if not current.get("spec", {}).get("nodeName"):
            raise PodRunnerError(f"pod {_key(pod)} is not scheduled to a node yet")
        return current

    async def _sandbox(self, pod: JSON, volumes: Mapping[str, Path]) -> _Sandbox:
        uid = str(pod["metadata"]["uid"])
        box = self._sandboxes.get(uid)
        if box is None:
            objects = PodObjects(self.kube, pod["metadata"]["namespace"], self.ref_timeout)
            view = pod
            if pod["spec"].get("automountServiceAccountToken") is not False:
                account = await objects.service_account(service_account_name(pod))
                if automount(pod, account):
                    view = with_token_volume(pod)
            directory = self.pod_dir(pod)
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            box = _Sandbox(view, directory, PodVolumes(view, directory / "volumes", {}, objects))
            self._sandboxes[uid] = box
        box.volumes.mapped.update({k: Path(v) for k, v in volumes.items()})
        return box

    def _staging(self, box: _Sandbox, container: str) -> Path:
        box.runs += 1
        path = box.directory / "roots" / f"{container}-{box.runs}"
        path.mkdir(parents=True, mode=0o755)
        return path

    def _argv(self, spec: JSON, env: Mapping[str, str]) -> list[str]:
        command = [expand(str(a), env) for a in spec.get("command") or []]
        args = [expand(str(a), env) for a in spec.get("args") or []]
        if command:
            return command + args
        image = str(spec.get("image", ""))
        entry = self.entrypoints.get(image) or self.entrypoints.get(_image_name(image))
        if entry is None:
            raise PodRunnerError(
                f"container {spec['name']!r} has no command and image {image!r}'s entrypoint "
                "is unknown; give the runner entrypoints={image: [argv...]}"
            )
        return [*entry, *args]


def _key(pod: Mapping[str, Any]) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _container(pod: JSON, name: str) -> tuple[JSON, bool]:
    spec = pod["spec"]
    for init, key in ((False, "containers"), (True, "initContainers")):
        for c in spec.get(key) or []:
            if c["name"] == name:
                return dict(c), init
    raise PodRunnerError(f"pod {_key(pod)} has no container or init container {name!r}")


def _image_name(image: str) -> str:
    """`repo/name:tag` or `repo/name@sha256:...` without tag and digest."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


def _user(pod: JSON, container: JSON) -> JSON:
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = {**pod_sc, **(container.get("securityContext") or {})}
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    return {"uid": sc.get("runAsUser"), "gid": sc.get("runAsGroup"), "groups": groups}
