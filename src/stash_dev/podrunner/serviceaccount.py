"""The pod's identity: the ServiceAccount admission plugin's token volume, applied late.

For: adding, to the runner's copy of a pod, the `kube-api-access-*` projected volume
(TokenRequest token, the `kube-root-ca.crt` ConfigMap's CA, the namespace) and its mount
at /var/run/secrets/kubernetes.io/serviceaccount in every container that does not
already mount that path, unless automounting is off for the pod or its ServiceAccount.
The test cluster runs without that admission plugin, so the runner does what it would
have done. Not for: changing the stored Pod, or issuing tokens (objects.py).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

JSON = dict[str, Any]

#: Where a Kubernetes pod finds its in-cluster credentials.
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def service_account_name(pod: JSON) -> str:
    """The pod's ServiceAccount, `default` when unset (as the admission plugin defaults)."""
    return str(pod.get("spec", {}).get("serviceAccountName") or "default")


def automount(pod: JSON, service_account: JSON) -> bool:
    """Whether the token is mounted: the pod's setting wins over the ServiceAccount's."""
    pod_value = pod.get("spec", {}).get("automountServiceAccountToken")
    if pod_value is not None:
        return bool(pod_value)
    return bool(service_account.get("automountServiceAccountToken", True))


def with_token_volume(pod: JSON) -> JSON:
    """A copy of `pod` with the API access volume mounted in every container lacking it."""
    out = copy.deepcopy(pod)
    spec = out.setdefault("spec", {})
    containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
    needs = [
        c
        for c in containers
        if not any(
            m.get("mountPath", "").rstrip("/") == TOKEN_MOUNT_PATH
            for m in c.get("volumeMounts") or []
        )
    ]
    if not needs:
        return out
    suffix = hashlib.sha256(str(pod["metadata"].get("uid", "")).encode()).hexdigest()[:5]
    name = f"kube-api-access-{suffix}"
    spec.setdefault("volumes", []).append(
        {
            "name": name,
            "projected": {
                "defaultMode": 0o644,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {
                                        "apiVersion": "v1",
                                        "fieldPath": "metadata.namespace",
                                    },
                                }
                            ]
                        }
                    },
                ],
            },
        }
    )
    for c in needs:
        c.setdefault("volumeMounts", []).append(
            {"name": name, "mountPath": TOKEN_MOUNT_PATH, "readOnly": True}
        )
    return out
