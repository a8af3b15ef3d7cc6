"""The AppBinding kind (`appcatalog.appscode.com/v1alpha1`, stash-api.md §9): how to reach
an application (a database) and which Secret holds its credentials.

What it is for: the wire model our CRD is generated from (we install it when KubeDB does
not), read by the operator when a backup or restore targets an AppBinding. Fields follow
kmodules' `appcatalog` v1alpha1: `type`, `version`, `clientConfig` (a `url`, or a
`service` with name/port/scheme/path/query), `secret`, `tlsSecret`, `secretTransforms` and
free-form `parameters` (which may hold a `StashAddon`).

Not for: resolving any of it (`stash.contract.appbinding`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from stash.api.base import Int32, StashModel
from stash.api.k8s import KubeList, LocalObjectReference, ObjectMeta

__all__ = [
    "APPCATALOG_GROUP",
    "AppBinding",
    "AppBindingSpec",
    "ClientConfig",
    "ServiceReference",
]

APPCATALOG_GROUP = "appcatalog.appscode.com"


class ServiceReference(StashModel):
    """A Service in the AppBinding's namespace that fronts the application."""

    scheme: str | None = None
    name: str | None = None
    namespace: str | None = None
    port: Int32 | None = None
    path: str | None = None
    query: str | None = None


class ClientConfig(StashModel):
    """Where the application listens: `url` wins over `service`."""

    url: str | None = None
    service: ServiceReference | None = None
    insecure_skip_tls_verify: bool | None = None
    ca_bundle: str | None = None
    server_name: str | None = None


class AppBindingSpec(StashModel):
    """What the application is and how to connect to it."""

    type: str | None = None
    version: str | None = None
    app_ref: dict[str, Any] | None = None
    client_config: ClientConfig | None = None
    secret: LocalObjectReference | None = None
    tls_secret: LocalObjectReference | None = None
    secret_transforms: KubeList | None = None
    parameters: dict[str, Any] | None = None


class AppBinding(StashModel):
    """A connection to an application (namespaced)."""

    api_version: str = f"{APPCATALOG_GROUP}/v1alpha1"
    kind: str = "AppBinding"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AppBindingSpec | None = None
