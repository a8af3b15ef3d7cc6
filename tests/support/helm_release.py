"""A release of charts/stash in the test apiserver: `helm install`, `upgrade`, `uninstall`
with the pinned helm, and what the release put into the cluster.

The chart's cluster-scoped objects have fixed names (the agent ClusterRoles, both webhook
configurations, the Snapshot API's APIService), and earlier tests of the same session
create some of them without helm (an in-process operator installs the agent
ClusterRoles). helm refuses to adopt objects another owner made, so `install` first
deletes those of them that no release owns, as an operator's admin would before
installing the chart. A release is always uninstalled at
teardown, and a webhook configuration or APIService of it that survived is deleted: a
failing webhook left behind would refuse Stash objects in every later test, an
unavailable APIService would stall namespace deletions.

Not for: rendering without a cluster (`tests.support.chart_tools.render`).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import yaml

from stash.kube.client import Kube, NotFound, Resource
from tests.support.chart_tools import CHART, helm

JSON = dict[str, Any]

_ADMISSION = "admissionregistration.k8s.io"
_RBAC = "rbac.authorization.k8s.io"
MUTATING = Resource(
    _ADMISSION,
    "v1",
    "mutatingwebhookconfigurations",
    "MutatingWebhookConfiguration",
    namespaced=False,
)
VALIDATING = Resource(
    _ADMISSION,
    "v1",
    "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration",
    namespaced=False,
)
APISERVICES = Resource(
    "apiregistration.k8s.io", "v1", "apiservices", "APIService", namespaced=False
)
CLUSTER_SCOPED = {
    "ClusterRole": Resource(_RBAC, "v1", "clusterroles", "ClusterRole", namespaced=False),
    "ClusterRoleBinding": Resource(
        _RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
    ),
    "MutatingWebhookConfiguration": MUTATING,
    "ValidatingWebhookConfiguration": VALIDATING,
    "APIService": APISERVICES,
}
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"


class HelmError(AssertionError):
    """helm failed; the message has its output."""


class HelmRelease:
    """One release of the chart in one namespace of the control plane."""

    def __init__(self, kube: Kube, kubeconfig: Path, namespace: str, name: str = "stash") -> None:
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.name = name
        self.installed = False

    # ----------------------------------------------------------------- helm
    async def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """helm `args` against this release's cluster and namespace."""
        done = await asyncio.to_thread(
            helm, *args, "--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace
        )
        if check and done.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    async def template(self, *values: str) -> list[JSON]:
        """The documents `install` with these `--set` values would create (CRDs aside)."""
        done = await self.helm("template", self.name, str(CHART), *_set(values))
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    async def install(self, *values: str, values_file: Path | None = None) -> str:
        """`helm install` with `--set` values (and a values file); returns helm's output."""
        await self.clear_unowned(await self.template(*values))
        extra = ["--values", str(values_file)] if values_file else []
        done = await self.helm("install", self.name, str(CHART), *_set(values), *extra)
        self.installed = True
        return done.stdout

    async def upgrade(self, *values: str, values_file: Path | None = None) -> str:
        """`helm upgrade` to these values (the chart's defaults for the rest)."""
        extra = ["--values", str(values_file)] if values_file else []
        done = await self.helm("upgrade", self.name, str(CHART), *_set(values), *extra)
        return done.stdout

    async def uninstall(self) -> None:
        """`helm uninstall --wait` (helm keeps the CRDs, as documented)."""
        await self.helm("uninstall", self.name, "--wait", "--timeout", "60s")
        self.installed = False

    async def manifest(self) -> list[JSON]:
        """The documents of the deployed revision (`helm get manifest`)."""
        done = await self.helm("get", "manifest", self.name)
        return [d for d in yaml.safe_load_all(done.stdout) if d]

    async def revision(self) -> int:
        """The deployed revision number."""
        done = await self.helm("status", self.name, "-o", "yaml")
        return int(yaml.safe_load(done.stdout)["version"])

    # ----------------------------------------------------------------- cluster
    def owns(self, obj: JSON) -> bool:
        """Whether helm recorded `obj` as this release's."""
        notes = obj.get("metadata", {}).get("annotations") or {}
        return notes.get(RELEASE_NAME) == self.name and (
            notes.get(RELEASE_NAMESPACE) == self.namespace
        )

    async def webhook_configurations(self) -> list[JSON]:
        """Live webhook configurations (both kinds) that belong to this release."""
        found = []
        for res in (MUTATING, VALIDATING):
            for obj in (await self.kube.list(res))["items"]:
                if self.owns(obj):
                    found.append(obj)
        return found

    async def teardown(self) -> list[str]:
        """Uninstall if installed; delete any webhook configuration or APIService of the
        release that is left (an unavailable APIService stalls every namespace deletion).
        Returns what had to be deleted by hand (empty when helm did it all)."""
        if self.installed:
            await self.uninstall()
        leftovers = []
        apiservices = [o for o in (await self.kube.list(APISERVICES))["items"] if self.owns(o)]
        for obj in [*await self.webhook_configurations(), *apiservices]:
            await self.kube.delete(CLUSTER_SCOPED[obj["kind"]], obj["metadata"]["name"])
            leftovers.append(f"{obj['kind']}/{obj['metadata']['name']}")
        return leftovers

    async def clear_unowned(self, docs: list[JSON]) -> None:
        """Delete the chart's cluster-scoped objects in `docs` that no release owns
        (made by an in-process operator earlier in the session)."""
        for doc in docs:
            res = CLUSTER_SCOPED.get(str(doc.get("kind")))
            if res is None:
                continue
            name = doc["metadata"]["name"]
            try:
                live = await self.kube.get(res, name)
            except NotFound:
                continue
            if not self.owns(live):
                await self.kube.delete(res, name)


def _set(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for value in values:
        out += ["--set", value]
    return out
