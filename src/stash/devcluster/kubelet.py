"""A stand-in kubelet for the local control plane: fake Nodes, Pods that reach Running.

There is no container runtime on our machines, so no container ever runs here. This
process registers `--nodes` Node objects with generous capacity and a Ready condition,
then watches Pods bound to them: a scheduled Pod gets status Running/Ready (init
containers reported completed), and a Pod being deleted is removed at once, as a kubelet
would after its containers stopped. With `--volumes-dir` it also plays a local-path
provisioner: an unbound PersistentVolumeClaim gets a hostPath PersistentVolume under
that directory, pre-bound to it (KCM's binder completes the binding). Tests that need
a container's process run it with the pod runner instead.

Run: `python -m stash.devcluster.kubelet --kubeconfig PATH --nodes 2`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger("stash.devcluster.kubelet")

POD_IP = "127.0.0.1"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Api:
    """Just enough of a Kubernetes REST client: JSON in, JSON out, bearer token."""

    def __init__(self, kubeconfig: dict[str, Any]) -> None:
        cluster = kubeconfig["clusters"][0]["cluster"]
        self.server = cluster["server"]
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        self.ssl = ssl.create_default_context(cadata=ca)
        self.headers = {"Authorization": f"Bearer {kubeconfig['users'][0]['user']['token']}"}
        self.session = aiohttp.ClientSession(
            headers=self.headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
        )

    async def call(
        self, method: str, path: str, body: Any = None, ctype: str = "application/json"
    ) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        async with self.session.request(
            method,
            self.server + path,
            data=data,
            headers={"Content-Type": ctype},
            ssl=self.ssl,
            timeout=aiohttp.ClientTimeout(total=30),
        ) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    async def watch(self, path: str, rv: str) -> AsyncIterator[dict[str, Any]]:
        url = f"{self.server}{path}?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
        async with self.session.get(
            url, ssl=self.ssl, timeout=aiohttp.ClientTimeout(total=None, sock_read=330)
        ) as r:
            if r.status != 200:
                raise _Gone() if r.status == 410 else RuntimeError(f"watch: HTTP {r.status}")
            buf = b""
            async for chunk in r.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)


class _Gone(Exception):
    pass


def node_object(name: str) -> dict[str, Any]:
    """A Node as a real kubelet would register it (labels, capacity)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "stash.dev/stand-in": "true",
            },
        },
        "spec": {},
    }


def node_status() -> dict[str, Any]:
    """A healthy, roomy Node status."""
    cap = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "500Gi"}
    now = _now()
    return {
        "status": {
            "capacity": cap,
            "allocatable": cap,
            "addresses": [
                {"type": "InternalIP", "address": POD_IP},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "stand-in kubelet is posting ready status",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "stand-in",
                "containerRuntimeVersion": "none://0",
                "kernelVersion": "",
                "osImage": "",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
                "kubeProxyVersion": "",
            },
        }
    }


def _runs_to_completion(pod: dict[str, Any]) -> bool:
    """Job pods: pretending they ran would complete Jobs that never ran anything."""
    owners = pod.get("metadata", {}).get("ownerReferences") or []
    return any(o.get("kind") == "Job" for o in owners)


def _waiting_status(pod: dict[str, Any], now: str) -> dict[str, Any]:
    """A Job pod as a kubelet reports it before its containers start: Pending, every
    container waiting. Only the pod runner (or nobody) moves it on."""
    spec = pod.get("spec", {})

    def waiting(c: dict[str, Any], reason: str) -> dict[str, Any]:
        return {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": reason}},
        }

    inits = spec.get("initContainers", [])
    return {
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {
                    "type": "Initialized",
                    "status": "False" if inits else "True",
                    "lastTransitionTime": now,
                },
                {"type": "ContainersReady", "status": "False", "lastTransitionTime": now},
                {"type": "Ready", "status": "False", "lastTransitionTime": now},
            ],
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": now,
            "initContainerStatuses": [waiting(c, "PodInitializing") for c in inits],
            "containerStatuses": [
                waiting(c, "PodInitializing" if inits else "ContainerCreating")
                for c in spec.get("containers", [])
            ],
        }
    }


def running_status(pod: dict[str, Any]) -> dict[str, Any]:
    """The status a kubelet reports once every container of `pod` started."""
    now = _now()
    spec = pod.get("spec", {})

    def running(c: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": now}},
        }

    def completed(c: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": True,
            "restartCount": 0,
            "state": {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": now,
                    "finishedAt": now,
                }
            },
        }

    if _runs_to_completion(pod):
        return _waiting_status(pod, now)
    conds = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "status": {
            "phase": "Running",
            "conditions": conds,
            "hostIP": POD_IP,
            "hostIPs": [{"ip": POD_IP}],
            "podIP": POD_IP,
            "podIPs": [{"ip": POD_IP}],
            "startTime": now,
            "initContainerStatuses": [completed(c) for c in spec.get("initContainers", [])],
            "containerStatuses": [running(c) for c in spec.get("containers", [])],
        }
    }


def persistent_volume_for(claim: dict[str, Any], root: Path) -> dict[str, Any]:
    """A hostPath PersistentVolume pre-bound to `claim`, as a local-path provisioner
    makes: its directory is `root/<namespace>-<claim>`."""
    meta, spec = claim["metadata"], claim.get("spec") or {}
    ns, name = meta["namespace"], meta["name"]
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    pv: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pv-{ns}-{name}-{meta['uid'][:8]}"[:253],
            "labels": {"stash.dev/provisioned-for": f"{ns}.{name}"[:63]},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "hostPath": {
                "path": str(root / f"{ns}-{name}-{meta['uid'][:8]}"),
                "type": "DirectoryOrCreate",
            },
            "claimRef": {"namespace": ns, "name": name, "uid": meta["uid"]},
        },
    }
    if spec.get("storageClassName"):
        pv["spec"]["storageClassName"] = spec["storageClassName"]
    if spec.get("volumeMode"):
        pv["spec"]["volumeMode"] = spec["volumeMode"]
    return pv


class Kubelet:
    """Registers nodes, keeps the Pods bound to them moving, provisions claims."""

    def __init__(self, api: _Api, nodes: list[str], volumes_dir: Path | None = None) -> None:
        self.api = api
        self.nodes = set(nodes)
        self.volumes_dir = volumes_dir

    async def register(self) -> None:
        for name in sorted(self.nodes):
            code, body = await self.api.call("POST", "/api/v1/nodes", node_object(name))
            if code not in (201, 409):
                raise RuntimeError(f"creating node {name}: HTTP {code}: {body}")
            await self.heartbeat(name)
            # The apiserver taints new Nodes not-ready; the node lifecycle controller
            # would lift that once the kubelet reports Ready. Do it ourselves.
            code, body = await self.api.call(
                "PATCH",
                f"/api/v1/nodes/{name}",
                {"spec": {"taints": None}},
                "application/merge-patch+json",
            )
            if code != 200:
                raise RuntimeError(f"untainting node {name}: HTTP {code}: {body}")

    async def heartbeat(self, name: str) -> None:
        code, body = await self.api.call(
            "PATCH",
            f"/api/v1/nodes/{name}/status",
            node_status(),
            "application/strategic-merge-patch+json",
        )
        if code != 200:
            log.warning("node %s status: HTTP %s: %s", name, code, body)

    async def heartbeats(self) -> None:
        while True:
            await asyncio.sleep(20)
            for name in sorted(self.nodes):
                await self.heartbeat(name)

    async def handle(self, pod: dict[str, Any]) -> None:
        spec, meta = pod.get("spec", {}), pod["metadata"]
        if spec.get("nodeName") not in self.nodes:
            return
        ns, name = meta["namespace"], meta["name"]
        path = f"/api/v1/namespaces/{ns}/pods/{name}"
        if meta.get("deletionTimestamp"):
            body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
            code, resp = await self.api.call("DELETE", path, body)
            if code not in (200, 404, 409):
                log.warning("deleting pod %s/%s: HTTP %s: %s", ns, name, code, resp)
            return
        status = pod.get("status", {})
        if status.get("phase", "Pending") != "Pending" or status.get("containerStatuses"):
            return
        code, resp = await self.api.call(
            "PATCH", path + "/status", running_status(pod), "application/merge-patch+json"
        )
        if code not in (200, 404):
            log.warning("pod %s/%s status: HTTP %s: %s", ns, name, code, resp)

    async def provision(self, claim: dict[str, Any]) -> None:
        """Give an unbound claim a hostPath volume (a local-path provisioner's job)."""
        if self.volumes_dir is None or claim["metadata"].get("deletionTimestamp"):
            return
        spec = claim.get("spec") or {}
        if spec.get("volumeName") or (claim.get("status") or {}).get("phase") == "Bound":
            return
        if (spec.get("dataSource") or spec.get("dataSourceRef")) is not None:
            return  # snapshots and clones need a CSI driver; leave them Pending
        pv = persistent_volume_for(claim, self.volumes_dir)
        await asyncio.to_thread(
            Path(pv["spec"]["hostPath"]["path"]).mkdir, parents=True, exist_ok=True, mode=0o777
        )
        code, body = await self.api.call("POST", "/api/v1/persistentvolumes", pv)
        if code not in (201, 409):
            log.warning("provisioning %s: HTTP %s: %s", pv["metadata"]["name"], code, body)

    async def reclaim(self, pv: dict[str, Any]) -> None:
        """Delete a volume we provisioned once its claim is gone (reclaim policy Delete)."""
        labels = pv.get("metadata", {}).get("labels") or {}
        phase = (pv.get("status") or {}).get("phase")
        if "stash.dev/provisioned-for" not in labels or phase not in ("Released", "Failed"):
            return
        path = ((pv.get("spec") or {}).get("hostPath") or {}).get("path")
        if self.volumes_dir is not None and path and Path(path).parent == self.volumes_dir:
            await asyncio.to_thread(shutil.rmtree, path, True)
        await self.api.call("DELETE", f"/api/v1/persistentvolumes/{pv['metadata']['name']}")

    async def run(self) -> None:
        await self.register()
        beat = asyncio.create_task(self.heartbeats())
        claims = asyncio.create_task(
            self._forever("/api/v1/persistentvolumeclaims", self.provision)
        )
        volumes = asyncio.create_task(self._forever("/api/v1/persistentvolumes", self.reclaim))
        try:
            await self._forever("/api/v1/pods", self.handle)
        finally:
            beat.cancel()
            claims.cancel()
            volumes.cancel()

    async def _forever(self, path: str, handle: Any) -> None:
        while True:
            try:
                await self._list_and_watch(path, handle)
            except (_Gone, aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                log.info("watch of %s restarts: %s", path, exc)
                await asyncio.sleep(1)

    async def _list_and_watch(self, path: str, handle: Any) -> None:
        code, body = await self.api.call("GET", path)
        if code != 200:
            raise RuntimeError(f"list {path}: HTTP {code}")
        for obj in body.get("items", []):
            await handle(obj)
        rv = body["metadata"]["resourceVersion"]
        async for ev in self.api.watch(path, rv):
            kind, obj = ev.get("type"), ev.get("object", {})
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Gone()
                raise RuntimeError(f"watch error: {obj}")
            if kind in ("ADDED", "MODIFIED"):
                await handle(obj)


async def _main(cfg: dict[str, Any], nodes: int, volumes_dir: Path | None) -> None:
    api = _Api(cfg)
    try:
        await Kubelet(api, [f"node-{i}" for i in range(nodes)], volumes_dir).run()
    finally:
        await api.session.close()


def main() -> None:
    """Entry point of `python -m stash.devcluster.kubelet`."""
    parser = argparse.ArgumentParser(prog="stash-dev-kubelet")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--volumes-dir", type=Path, help="provision claims as hostPath here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with open(args.kubeconfig) as f:
        cfg = json.load(f)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(cfg, args.nodes, args.volumes_dir))


if __name__ == "__main__":
    main()
