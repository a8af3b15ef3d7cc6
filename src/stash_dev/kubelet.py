"""A stand-in kubelet for the local control plane: fake Nodes, Pods that reach Running.

There is no container runtime on our machines, so no container ever runs here. This
process registers `--nodes` Node objects with generous capacity and a Ready condition,
then watches Pods bound to them: a scheduled Pod gets status Running/Ready (init
containers reported completed), and a Pod being deleted is removed at once, as a kubelet
would after its containers stopped. The Nodes are at `--node-ip` (this host's address);
a pod's `status.podIP` is that address too, or, with `--pod-cidr` (a range routed to
this host), an address of its own, kept for its life and freed when it is gone
(`stash_dev.podips`). Either way EndpointSlices lead a Service to this host, where the pod
runner starts the pod's processes. What is reported: `stash_dev.kubelet_status`. With
`--volumes-dir` it also plays a local-path
provisioner: an unbound PersistentVolumeClaim gets a hostPath PersistentVolume under that
directory, pre-bound to it (KCM's binder completes the binding), unless its StorageClass
names a provisioner (a CSI driver's, tests/support/csi.py), which then provisions it.
Tests that need a container's process run it with the pod runner instead. With `--port`
it serves the kubelet's exec endpoint on the node address (`stash_dev.kubelet_exec`), so
`kubectl exec` through the apiserver reaches a container the pod runner started. It talks to the
apiserver through `stash.kube.client.Kube`, like the operator.

Run: `python -m stash_dev.kubelet --kubeconfig PATH --nodes 2`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from stash.kube.client import (
    JSON,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    Conflict,
    Gone,
    Kube,
    KubeError,
    NotFound,
    Resource,
)
from stash.kube.resources import NODES, PODS, PVCS, PVS
from stash_dev.kubelet_exec import ExecServer, grant_apiserver_access, server_ssl_context
from stash_dev.kubelet_status import node_object, node_status, running_status
from stash_dev.podips import LOOPBACK, PodIPs, PoolExhausted

STORAGECLASSES = Resource(
    "storage.k8s.io", "v1", "storageclasses", "StorageClass", namespaced=False
)
log = logging.getLogger("stash_dev.kubelet")


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

    def __init__(
        self,
        kube: Kube,
        nodes: list[str],
        volumes_dir: Path | None = None,
        node_ip: str = LOOPBACK,
        pod_cidr: str | None = None,
        kubelet_port: int = 0,
    ) -> None:
        self.kube = kube
        self.kubelet_port = kubelet_port
        self.nodes = set(nodes)
        self.volumes_dir = volumes_dir
        self.node_ip = node_ip
        self.ips = PodIPs(pod_cidr, reserved=[node_ip]) if pod_cidr else None

    async def register(self) -> None:
        """Create the Nodes (or adopt existing ones), report them Ready, lift the taint."""
        for name in sorted(self.nodes):
            with contextlib.suppress(Conflict):
                await self.kube.create(NODES, node_object(name))
            await self.heartbeat(name)
            # The apiserver taints new Nodes not-ready; the node lifecycle controller
            # would lift that once the kubelet reports Ready. Do it ourselves.
            await self.kube.patch(NODES, name, {"spec": {"taints": None}})

    async def heartbeat(self, name: str) -> None:
        """Post a fresh Ready status for Node `name`."""
        try:
            await self.kube.patch(
                NODES,
                name,
                node_status(self.node_ip, self.kubelet_port),
                subresource="status",
                content_type=STRATEGIC_PATCH,
            )
        except KubeError as exc:
            log.warning("node %s status: %s", name, exc)

    async def heartbeats(self) -> None:
        """Every 20 s, a heartbeat for each Node."""
        while True:
            await asyncio.sleep(20)
            for name in sorted(self.nodes):
                await self.heartbeat(name)

    async def handle(self, pod: JSON) -> None:
        """Finish a deletion, or report a newly scheduled Pod of ours started."""
        spec, meta = pod.get("spec", {}), pod["metadata"]
        if spec.get("nodeName") not in self.nodes:
            return
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        if meta.get("deletionTimestamp"):
            body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
            try:
                await self.kube.request("DELETE", PODS.path(ns, name), body=body)
            except (NotFound, Conflict):
                pass
            except KubeError as exc:
                log.warning("deleting pod %s/%s: %s", ns, name, exc)
                return
            self._pod_deleted(pod)
            return
        status = pod.get("status", {})
        if status.get("phase", "Pending") != "Pending" or status.get("containerStatuses"):
            if self.ips and status.get("podIP") and not spec.get("hostNetwork"):
                self.ips.adopt(uid, status["podIP"])  # reported before a restart of ours
            return
        try:
            ip = self.node_ip if spec.get("hostNetwork") or not self.ips else self.ips.assign(uid)
        except PoolExhausted as exc:
            log.warning("pod %s/%s: %s", ns, name, exc)
            return
        try:
            await self.kube.patch(
                PODS,
                name,
                running_status(pod, ip, self.node_ip),
                ns,
                subresource="status",
                content_type=MERGE_PATCH,
            )
        except NotFound:
            pass
        except KubeError as exc:
            log.warning("pod %s/%s status: %s", ns, name, exc)

    async def provision(self, claim: JSON) -> None:
        """Give an unbound claim a hostPath volume (a local-path provisioner's job)."""
        if self.volumes_dir is None or claim["metadata"].get("deletionTimestamp"):
            return
        spec = claim.get("spec") or {}
        if spec.get("volumeName") or (claim.get("status") or {}).get("phase") == "Bound":
            return
        if (spec.get("dataSource") or spec.get("dataSourceRef")) is not None:
            return  # snapshots and clones need a CSI driver; leave them Pending
        if await self._external_class(spec.get("storageClassName")):
            return  # its StorageClass's provisioner (a CSI driver's) provisions it
        pv = persistent_volume_for(claim, self.volumes_dir)
        await asyncio.to_thread(
            Path(pv["spec"]["hostPath"]["path"]).mkdir, parents=True, exist_ok=True, mode=0o777
        )
        try:
            await self.kube.create(PVS, pv)
        except Conflict:
            pass
        except KubeError as exc:
            log.warning("provisioning %s: %s", pv["metadata"]["name"], exc)

    async def _external_class(self, name: str | None) -> bool:
        """Whether StorageClass `name` exists and names a provisioner (not ours to fill)."""
        if not name:
            return False
        try:
            sc = await self.kube.get(STORAGECLASSES, name)
        except KubeError:
            return False
        return sc.get("provisioner") not in (None, "", "kubernetes.io/no-provisioner")

    async def reclaim(self, pv: JSON) -> None:
        """Delete a volume we provisioned once its claim is gone (reclaim policy Delete)."""
        labels = pv.get("metadata", {}).get("labels") or {}
        phase = (pv.get("status") or {}).get("phase")
        if "stash.dev/provisioned-for" not in labels or phase not in ("Released", "Failed"):
            return
        path = ((pv.get("spec") or {}).get("hostPath") or {}).get("path")
        if self.volumes_dir is not None and path and Path(path).parent == self.volumes_dir:
            await asyncio.to_thread(shutil.rmtree, path, True)
        try:
            await self.kube.delete(PVS, pv["metadata"]["name"])
        except KubeError as exc:
            log.warning("deleting %s: %s", pv["metadata"]["name"], exc)

    async def run(self) -> None:
        """Register, then keep Pods, claims and volumes moving until cancelled."""
        await self.register()
        beat = asyncio.create_task(self.heartbeats())
        claims = asyncio.create_task(self._forever(PVCS, self.provision))
        volumes = asyncio.create_task(self._forever(PVS, self.reclaim))
        try:
            await self._forever(PODS, self.handle, self._pods_listed, self._pod_deleted)
        finally:
            beat.cancel()
            claims.cancel()
            volumes.cancel()

    def _pods_listed(self, pods: list[JSON]) -> None:
        if self.ips is not None:
            self.ips.retain(p["metadata"]["uid"] for p in pods)

    def _pod_deleted(self, pod: JSON) -> None:
        if self.ips is not None:
            self.ips.release(pod["metadata"]["uid"])

    async def _forever(
        self,
        res: Resource,
        handle: Callable[[JSON], Awaitable[None]],
        listed: Callable[[list[JSON]], None] | None = None,
        deleted: Callable[[JSON], None] | None = None,
    ) -> None:
        while True:
            try:
                await self._list_and_watch(res, handle, listed, deleted)
            except (KubeError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.info("watch of %s restarts: %s", res.plural, exc)
                await asyncio.sleep(1)

    async def _list_and_watch(
        self,
        res: Resource,
        handle: Callable[[JSON], Awaitable[None]],
        listed: Callable[[list[JSON]], None] | None,
        deleted: Callable[[JSON], None] | None,
    ) -> None:
        """List once, then watch from there; a watch that ends (server timeout) resumes
        from the last resourceVersion seen; 410 Gone returns for a fresh list. `listed`
        sees each full list, `deleted` each object the watch reports gone."""
        items, rv = await self.kube.list_all(res)
        if listed is not None:
            listed(items)
        for obj in items:
            await handle(obj)
        while True:
            try:
                async for ev in self.kube.watch(res, resource_version=rv):
                    obj = ev.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if ev.get("type") in ("ADDED", "MODIFIED"):
                        await handle(obj)
                    elif ev.get("type") == "DELETED" and deleted is not None:
                        deleted(obj)
            except Gone:
                return


async def _main(args: argparse.Namespace) -> None:
    kube = await Kube.connect(args.kubeconfig)
    names = [f"node-{i}" for i in range(args.nodes)]
    server = ExecServer(kube, set(names))
    try:
        if args.port:
            await grant_apiserver_access(kube)
            tls = server_ssl_context(
                args.tls_cert_file, args.tls_private_key_file, args.client_ca_file
            )
            await server.start(args.node_ip, args.port, tls)
        kubelet = Kubelet(kube, names, args.volumes_dir, args.node_ip, args.pod_cidr, args.port)
        await kubelet.run()
    finally:
        await server.stop()
        await kube.close()


def main() -> None:
    """Entry point of `python -m stash_dev.kubelet`."""
    parser = argparse.ArgumentParser(prog="stash-dev-kubelet")
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--volumes-dir", type=Path, help="provision claims as hostPath here")
    parser.add_argument("--node-ip", default=LOOPBACK, help="the Nodes' (this host's) address")
    parser.add_argument("--pod-cidr", help="give each pod its own address of this local range")
    parser.add_argument("--port", type=int, default=0, help="serve exec here (0: do not)")
    parser.add_argument("--tls-cert-file", help="the exec endpoint's serving certificate")
    parser.add_argument("--tls-private-key-file", help="its key")
    parser.add_argument("--client-ca-file", help="the CA of the apiserver's client certificate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
