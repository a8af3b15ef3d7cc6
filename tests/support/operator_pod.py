"""The chart's operator, run as its Deployment's pod says: the pod the ReplicaSet made,
started by the pod runner with its exact args and env and its own ServiceAccount token
(no admin kubeconfig), reached at the loopback pod IP the stand-in kubelet gave it.

What it is for: finding that pod, starting its `operator` container in the background
(`stash` from this venv stands in for the image's entrypoint), and asking it what a
kubelet's readiness probe and the apiserver would: `/readyz` on the metrics port, and
TLS on the webhook port with a certificate for the chart's Service that the caBundle in
the webhook configurations verifies.

Not for: installing the chart (`tests.support.helm_release`).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from stash.kube.client import Kube, Resource
from stash.kube.resources import PODS
from stash_dev.podrunner import PodRunner, RunningContainer
from tests.support.cluster import eventually
from tests.support.helm_release import MUTATING, VALIDATING

JSON = dict[str, Any]

ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")

#: What the image's ENTRYPOINT would run: the `stash` command of this venv.
STASH = str(Path(sys.executable).parent / "stash")

#: What a failed webhook check means (issue 12, item 1: the operator serves the webhook).
WEBHOOK_NOT_SERVED = (
    "the operator pod's admission webhook cannot be called as the apiserver calls it "
    "(TLS on --webhook-port at the pod IP, with a certificate for the chart's Service "
    "that the caBundle the operator wrote into the webhook configurations verifies)"
)


@dataclass
class OperatorPod:
    """The operator pod and its running `operator` container."""

    pod: JSON
    handle: RunningContainer
    metrics_port: int
    webhook_port: int

    @property
    def ip(self) -> str:
        """The pod's IP (a loopback address of its own)."""
        return str(self.pod["status"]["podIP"])

    def url(self, path: str) -> str:
        """http://<pod IP>:<metrics port><path>."""
        return f"http://{self.ip}:{self.metrics_port}{path}"


@dataclass
class ChartOperator:
    """Starts operator pods of a release and remembers them (their logs explain failures)."""

    kube: Kube
    runner: PodRunner
    started: list[OperatorPod] = field(default_factory=list)

    async def start(
        self, namespace: str, release: str, metrics_port: int, webhook_port: int
    ) -> OperatorPod:
        """Run the one operator pod of `release` and wait until `/readyz` answers 200 on
        its IP (the ports are the chart's metrics.port and webhook.port values)."""
        pod = await _the_pod(self.kube, namespace, release)
        handle = await self.runner.run(pod, "operator", report_status=True)
        op = OperatorPod(pod, handle, metrics_port, webhook_port)
        self.started.append(op)
        await eventually(
            lambda: _ready(op), timeout=60, interval=0.5, what=f"/readyz on {op.url('')}"
        )
        return op

    def logs(self) -> str:
        """The tail of each started operator's output."""
        return "\n".join(
            f"--- {op.handle.pod_key} (exit {op.handle.exit_code})\n{op.handle.logs()[-8000:]}"
            for op in self.started
        )


async def _the_pod(kube: Kube, namespace: str, release: str) -> JSON:
    """The single live operator pod of the release, scheduled and given its IP."""

    async def probe() -> JSON | None:
        selector = f"app.kubernetes.io/component=operator,app.kubernetes.io/instance={release}"
        pods = (await kube.list(PODS, namespace, label_selector=selector))["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(live) != 1:
            return None
        pod = live[0]
        ready = pod["spec"].get("nodeName") and (pod.get("status") or {}).get("podIP")
        return pod if ready else None

    return await eventually(probe, timeout=60, what=f"the operator pod of release {release}")


async def _ready(op: OperatorPod) -> bool:
    if op.handle.exit_code is not None:
        raise AssertionError(f"the operator exited {op.handle.exit_code}:\n{op.handle.logs()}")
    timeout = aiohttp.ClientTimeout(total=3)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(op.url("/readyz")) as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def endpoints(kube: Kube, namespace: str, service: str) -> dict[str, dict[str, int]]:
    """Ready endpoint IP -> {port name: port} from the Service's EndpointSlices."""
    selector = f"kubernetes.io/service-name={service}"
    slices = (await kube.list(ENDPOINTSLICES, namespace, label_selector=selector))["items"]
    out: dict[str, dict[str, int]] = {}
    for sl in slices:
        ports = {str(p.get("name") or ""): int(p["port"]) for p in sl.get("ports") or []}
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is not False:
                for ip in ep.get("addresses") or []:
                    out[ip] = ports
    return out


async def ca_bundles(kube: Kube, config_name: str) -> set[str]:
    """Every webhook's caBundle in both configurations ('' for one not set)."""
    found: set[str] = set()
    for res in (MUTATING, VALIDATING):
        obj = await kube.get(res, config_name)
        for hook in obj.get("webhooks") or []:
            found.add(str((hook.get("clientConfig") or {}).get("caBundle") or ""))
    return found


async def webhook_problem(kube: Kube, op: OperatorPod, config_name: str, host: str) -> str | None:
    """Why the apiserver could not call the webhook at the pod IP as `host`, or None."""
    bundles = await ca_bundles(kube, config_name)
    if "" in bundles:
        return f"a webhook of {config_name} has no caBundle"
    if len(bundles) != 1:
        return f"the webhooks of {config_name} name {len(bundles)} different CAs"
    ca = base64.b64decode(next(iter(bundles))).decode()
    ctx = ssl.create_default_context(cadata=ca)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(op.ip, op.webhook_port, ssl=ctx, server_hostname=host), 5
        )
    except (OSError, TimeoutError) as exc:
        return f"TLS to {op.ip}:{op.webhook_port} as {host}: {exc}"
    writer.close()
    return None
