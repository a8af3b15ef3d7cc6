"""What the stand-in kubelet reports: Node objects and status, and the status of a Pod
it started (Running/Ready, or Pending with waiting containers for Job pods).

Pure functions of the objects given (and the clock). Not for: watching, patching or
deciding which pod gets which IP (`stash_dev.kubelet`, `stash_dev.podips`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def node_status(address: str, kubelet_port: int = 0) -> dict[str, Any]:
    """A healthy, roomy Node status; the Node is at `address`. With `kubelet_port`, its
    kubelet serves exec there, over WebSockets (the feature the Node declares makes the
    apiserver pass WebSocket upgrades through instead of translating them to SPDY)."""
    cap = {"cpu": "64", "memory": "256Gi", "pods": "250", "ephemeral-storage": "500Gi"}
    now = _now()
    served: dict[str, Any] = {}
    if kubelet_port:
        served = {
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "declaredFeatures": ["ExtendWebSocketsToKubelet"],
        }
    return {
        "status": {
            **served,
            "capacity": cap,
            "allocatable": cap,
            "addresses": [
                {"type": "InternalIP", "address": address},
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


def _waiting_status(pod: dict[str, Any], now: str, pod_ip: str, host_ip: str) -> dict[str, Any]:
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
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": now,
            "initContainerStatuses": [waiting(c, "PodInitializing") for c in inits],
            "containerStatuses": [
                waiting(c, "PodInitializing" if inits else "ContainerCreating")
                for c in spec.get("containers", [])
            ],
        }
    }


def running_status(
    pod: dict[str, Any], pod_ip: str = "127.0.0.1", host_ip: str | None = None
) -> dict[str, Any]:
    """The status a kubelet reports once every container of `pod` started (Job pods:
    once its sandbox, with address `pod_ip`, is up and its containers wait), on a node
    at `host_ip` (default: `pod_ip`, as for a hostNetwork pod)."""
    host_ip = host_ip or pod_ip
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
        return _waiting_status(pod, now, pod_ip, host_ip)
    conds = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
        for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "status": {
            "phase": "Running",
            "conditions": conds,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": now,
            "initContainerStatuses": [completed(c) for c in spec.get("initContainers", [])],
            "containerStatuses": [running(c) for c in spec.get("containers", [])],
        }
    }
