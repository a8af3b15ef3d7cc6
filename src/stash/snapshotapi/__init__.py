"""The Snapshot virtual resource, `repositories.stash.appscode.com/v1alpha1` (stash-api.md
§11): an aggregated API the kube-apiserver proxies `kubectl get|delete snapshots` to.

`objects` holds the documents, `app` the HTTP answers (request-header authentication,
SubjectAccessReview, restic), `server` TLS and the APIService registration.

Not for: the operator's reconcilers; the kubectl plugin prints the same objects.
"""

from __future__ import annotations

from stash.snapshotapi.objects import snapshot_object
from stash.snapshotapi.server import SnapshotApiServer

__all__ = ["SnapshotApiServer", "snapshot_object"]
