"""What the pod runner reads from (and asks of) the apiserver on a container's behalf.

For: Secrets, ConfigMaps and ServiceAccounts a pod refers to, and ServiceAccount tokens
from the TokenRequest API, read with the runner's own (admin) client as a kubelet reads
them with its node credentials. A reference that is missing and not `optional` is waited
for until a deadline, as a kubelet retries a container that cannot start yet; after it
the error names the object. Not for: writing anything into the pod's view (volumes.py)
and never for logging a value: only names and keys leave this module in messages.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stash.kube.client import JSON, Kube, NotFound, Resource

SECRETS = Resource("", "v1", "secrets", "Secret")
CONFIG_MAPS = Resource("", "v1", "configmaps", "ConfigMap")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
PODS = Resource("", "v1", "pods", "Pod")


_PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
_PVS = Resource("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)


class PodRunnerError(Exception):
    """A container could not be prepared or started; the message says what and why."""


@dataclass
class PodObjects:
    """Reads for one pod's container start, cached so each object is read once."""

    kube: Kube
    namespace: str
    timeout: float = 30.0
    _cache: dict[tuple[str, str], JSON | None] = field(default_factory=dict)

    async def _get(self, res: Resource, name: str, optional: bool) -> JSON | None:
        key = (res.plural, name)
        if key in self._cache:
            return self._cache[key]
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                obj: JSON | None = await self.kube.get(res, name, self.namespace)
                break
            except NotFound:
                if optional:
                    obj = None
                    break
                if time.monotonic() >= deadline:
                    raise PodRunnerError(
                        f"{res.kind} {self.namespace}/{name} not found "
                        f"(waited {self.timeout:.0f}s); create it or mark the reference optional"
                    ) from None
                await asyncio.sleep(0.5)
        self._cache[key] = obj
        return obj

    async def claim_path(self, claim: str) -> Path:
        """The host directory behind a bound PersistentVolumeClaim (a hostPath or local
        PersistentVolume, as the dev cluster's provisioner makes)."""
        pvc = await self._get(_PVCS, claim, False)
        assert pvc is not None
        volume = (pvc.get("spec") or {}).get("volumeName")
        if not volume or (pvc.get("status") or {}).get("phase") != "Bound":
            raise PodRunnerError(f"PersistentVolumeClaim {self.namespace}/{claim} is not bound")
        pv = await self.kube.get(_PVS, volume)
        spec = pv.get("spec") or {}
        path = (spec.get("hostPath") or {}).get("path") or (spec.get("local") or {}).get("path")
        if not path:
            raise PodRunnerError(
                f"PersistentVolume {volume} (of claim {self.namespace}/{claim}) has no "
                "hostPath or local path: map the volume with volumes={...}"
            )
        return Path(path)

    async def secret(self, name: str, optional: bool = False) -> dict[str, bytes] | None:
        """A Secret's decoded data, or None when it is optional and missing."""
        obj = await self._get(SECRETS, name, optional)
        if obj is None:
            return None
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    async def config_map(self, name: str, optional: bool = False) -> dict[str, bytes] | None:
        """A ConfigMap's data and binaryData as bytes, or None when optional and missing."""
        obj = await self._get(CONFIG_MAPS, name, optional)
        if obj is None:
            return None
        out = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return out

    async def service_account(self, name: str) -> JSON:
        """The ServiceAccount object (waited for, as KCM creates `default` shortly)."""
        obj = await self._get(SERVICE_ACCOUNTS, name, optional=False)
        assert obj is not None
        return obj

    async def token(
        self,
        service_account: str,
        *,
        audience: str | None,
        expiration_seconds: int,
        bound_pod: tuple[str, str] | None,
    ) -> str:
        """A token for `service_account` from the TokenRequest API, bound to (name, uid)."""
        await self.service_account(service_account)
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if audience:
            spec["audiences"] = [audience]
        if bound_pod is not None:
            spec["boundObjectRef"] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": bound_pod[0],
                "uid": bound_pod[1],
            }
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        path = SERVICE_ACCOUNTS.path(self.namespace, service_account, "token")
        resp = await self.kube.request("POST", path, body=body)
        return str(resp["status"]["token"])
