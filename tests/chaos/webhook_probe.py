"""Does admission keep working while operators die? A probe that keeps creating a
workload a BackupConfiguration targets and says how it got its agent.

Each probe deletes and creates the Deployment `probe` (no replicas) and sorts the
result: `admitted-mutated` (the webhook answered: the stored object has the `stash`
sidecar), `repaired` (admitted without it while the webhook was down — mutation fails
open — and the operator's workload controller added it within REPAIR_TIMEOUT),
`unrepaired` (neither: a violation), or `refused` (the apiserver refused the create).

Not for: the operator's own tests of the webhook (tests/integration).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import aiohttp

from stash.contract.resources import BACKUPCONFIGURATIONS
from stash.kube.client import JSON, Kube, KubeError, NotFound
from stash.kube.resources import DEPLOYMENTS

#: Seconds the operator has to put a missing sidecar into the probe workload.
REPAIR_TIMEOUT = 60.0
PROBE = "probe"


def _has_agent(obj: JSON) -> bool:
    spec = obj["spec"]["template"]["spec"]
    names = [c["name"] for c in [*spec.get("containers", []), *spec.get("initContainers", [])]]
    return "stash" in names


def probe_objects(repository: str) -> list[tuple[object, JSON]]:
    """The BackupConfiguration that targets the probe workload."""
    bc = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "bc-probe"},
        "spec": {
            "schedule": "0 0 1 1 *",
            "repository": {"name": repository},
            "target": {
                "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": PROBE},
                "paths": ["/data"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            "retentionPolicy": {"name": "keep-all", "keepLast": 10, "prune": False},
        },
    }
    return [(BACKUPCONFIGURATIONS, bc)]


def _deployment() -> JSON:
    labels = {"app": PROBE}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": PROBE},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
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
            },
        },
    }


class WebhookProbe:
    """Probes admission in the background; `counts` says what happened."""

    def __init__(self, kube: Kube, namespace: str, interval: float = 3.0) -> None:
        self.kube = kube
        self.namespace = namespace
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing."""
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop probing (a probe in flight is abandoned, not counted)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                outcome = await self.once()
            except KubeError as exc:  # the apiserver itself may be restarting
                outcome = f"apiserver-error: {exc.status}"
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                outcome = f"apiserver-error: {type(exc).__name__}"
            self.counts[outcome.split(":")[0]] += 1
            if outcome.startswith("unrepaired"):
                self.failures.append(outcome)
            await asyncio.sleep(self.interval)

    async def once(self) -> str:
        """One probe; its outcome."""
        with contextlib.suppress(NotFound):
            await self.kube.delete(DEPLOYMENTS, PROBE, self.namespace)
        for _ in range(100):
            try:
                await self.kube.get(DEPLOYMENTS, PROBE, self.namespace)
            except NotFound:
                break
            await asyncio.sleep(0.1)
        try:
            stored = await self.kube.create(DEPLOYMENTS, _deployment(), self.namespace)
        except KubeError as exc:
            if exc.status >= 500 or exc.status == 0:
                raise
            return f"refused: {exc.status} {exc}"
        if _has_agent(stored):
            return "admitted-mutated"
        loop = asyncio.get_running_loop()
        end = loop.time() + REPAIR_TIMEOUT
        while loop.time() < end:
            await asyncio.sleep(1)
            try:
                live = await self.kube.get(DEPLOYMENTS, PROBE, self.namespace)
            except KubeError:
                continue
            if _has_agent(live):
                return "repaired"
        return f"unrepaired: probe created without the sidecar, none added in {REPAIR_TIMEOUT}s"
