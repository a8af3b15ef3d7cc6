"""The Repository kind (`stash.appscode.com/v1alpha1`, stash-api.md §1.2, §2).

What it is for: where a restic repository lives (one backend per Repository), who may
use it, whether its data is wiped on deletion, and what the last backup found.

Not for: building restic URLs or environments from a backend (that is `stash.restic`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from stash.api.base import Bool, Int64, StashModel, Time, crd_default
from stash.api.k8s import LabelSelector, ObjectMeta, TypedObjectReference

__all__ = [
    "AllowedNamespaces",
    "AzureSpec",
    "B2Spec",
    "Backend",
    "GCSSpec",
    "LocalSpec",
    "Repository",
    "RepositorySpec",
    "RepositoryStatus",
    "RestServerSpec",
    "S3Spec",
    "SwiftSpec",
    "UsagePolicy",
]

PROVIDERS = ("local", "s3", "gcs", "azure", "swift", "b2", "rest")
"""Backend providers in the order `Backend.provider()` checks them."""


class LocalSpec(StashModel):
    """A local backend: any inline Kubernetes VolumeSource plus where to mount it.

    The VolumeSource keys (hostPath, persistentVolumeClaim, nfs, ...) are kept as extra
    fields; `volume_source()` returns them.
    """

    model_config = ConfigDict(extra="allow")

    mount_path: str
    sub_path: str | None = None

    def volume_source(self) -> dict[str, Any]:
        """Return the inline VolumeSource (e.g. `{"hostPath": {"path": "/data"}}`)."""
        return dict(self.model_extra or {})


class S3Spec(StashModel):
    """An S3-compatible bucket (AWS, MinIO, ...)."""

    endpoint: str
    bucket: str
    prefix: str | None = None
    region: str | None = None
    insecure_tls: Bool | None = Field(default=None, alias="insecureTLS")


class GCSSpec(StashModel):
    """A Google Cloud Storage bucket."""

    bucket: str
    prefix: str | None = None
    max_connections: Int64 | None = None


class AzureSpec(StashModel):
    """An Azure Blob Storage container."""

    container: str
    prefix: str | None = None
    max_connections: Int64 | None = None


class SwiftSpec(StashModel):
    """An OpenStack Swift container."""

    container: str
    prefix: str | None = None


class B2Spec(StashModel):
    """A Backblaze B2 bucket."""

    bucket: str
    prefix: str | None = None
    max_connections: Int64 | None = None


class RestServerSpec(StashModel):
    """A restic REST server; credentials come from the storage secret."""

    url: str | None = None


class Backend(StashModel):
    """Where the repository is stored: one provider plus the secret holding its keys."""

    storage_secret_name: str | None = None
    local: LocalSpec | None = None
    s3: S3Spec | None = None
    gcs: GCSSpec | None = None
    azure: AzureSpec | None = None
    swift: SwiftSpec | None = None
    b2: B2Spec | None = None
    rest: RestServerSpec | None = None

    def provider(self) -> str:
        """Return which provider is set (`"s3"`, `"local"`, ...), or `""` if none is."""
        for name in PROVIDERS:
            if getattr(self, name) is not None:
                return name
        return ""


class AllowedNamespaces(StashModel):
    """Which namespaces' invokers may use the repository."""

    from_: Literal["Same", "All", "Selector"] | None = Field(
        default=None, alias="from", json_schema_extra=crd_default("Same")
    )
    selector: LabelSelector | None = None


class UsagePolicy(StashModel):
    """Cross-namespace usage of a repository (absent = same namespace only)."""

    allowed_namespaces: AllowedNamespaces | None = None


class RepositorySpec(StashModel):
    """The desired state of a Repository."""

    backend: Backend | None = None
    wipe_out: Bool | None = None
    usage_policy: UsagePolicy | None = None


class RepositoryStatus(StashModel):
    """What the last backup found in the repository."""

    observed_generation: Int64 | None = None
    first_backup_time: Time | None = None
    last_backup_time: Time | None = None
    integrity: Bool | None = None
    total_size: str | None = None
    snapshot_count: Int64 | None = None
    snapshots_removed_on_last_cleanup: Int64 | None = None
    last_integrity_check_time: Time | None = None
    """When `restic check` last ran on the repository, or stash created it (`integrity`
    is its result).
    Not in Stash: the operator runs the check on its own schedule
    (docs/compatibility.md)."""
    references: list[TypedObjectReference] | None = None


class Repository(StashModel):
    """A restic repository on some backend."""

    api_version: str = "stash.appscode.com/v1alpha1"
    kind: str = "Repository"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RepositorySpec | None = None
    status: RepositoryStatus | None = None
