"""The Snapshot virtual resource's documents (stash-api.md §11), pure.

What it is for: the discovery documents of `repositories.stash.appscode.com/v1alpha1`,
a restic snapshot as a `Snapshot` object (`snapshot_object`) and as a Table row,
snapshot names (`<repository>-<first 8 characters of the ID>`: `split_name`), the
equality label selectors `list` takes (`parse_selector`, `matches`) and `Status`
documents for errors.

Not for: running restic or serving HTTP (`app`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from stash.restic import Snapshot

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "api_group",
    "api_group_list",
    "api_resource_list",
    "matches",
    "parse_selector",
    "snapshot_object",
    "split_name",
    "status",
    "table",
]

GROUP = "repositories.stash.appscode.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
_SHORT = re.compile(r"^[0-9a-f]{8}$")


def api_group() -> dict[str, Any]:
    """`GET /apis/<group>`."""
    gv = {"groupVersion": API_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [gv],
        "preferredVersion": gv,
    }


def api_group_list() -> dict[str, Any]:
    """`GET /apis`."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


def api_resource_list() -> dict[str, Any]:
    """`GET /apis/<group>/<version>`: snapshots, namespaced, get/list/delete."""
    resource = {
        "name": "snapshots",
        "singularName": "snapshot",
        "namespaced": True,
        "kind": "Snapshot",
        "verbs": ["get", "list", "delete"],
        "categories": ["stash", "appscode"],
    }
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [resource],
    }


def _time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot_object(
    repo: str, namespace: str, snap: Snapshot, repo_labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A snapshot as the Snapshot resource shows it: labels `repository` and `hostname`
    (after the Repository's own), uid the full ID, created at the snapshot's time."""
    labels = {**(repo_labels or {}), "repository": repo, "hostname": snap.hostname}
    return {
        "apiVersion": API_VERSION,
        "kind": "Snapshot",
        "metadata": {
            "name": f"{repo}-{snap.id[:8]}",
            "namespace": namespace,
            "uid": snap.id,
            "creationTimestamp": _time(snap.time),
            "labels": labels,
        },
        "status": {
            "tree": snap.tree,
            "paths": list(snap.paths),
            "hostname": snap.hostname,
            "username": snap.username,
            "uid": snap.uid,
            "gid": snap.gid,
            "tags": list(snap.tags),
            "repository": repo,
        },
    }


def table(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Table kubectl prints: Name, ID, Repository, Hostname, Created At."""
    columns = [
        {"name": "Name", "type": "string", "format": "name"},
        {"name": "ID", "type": "string"},
        {"name": "Repository", "type": "string"},
        {"name": "Hostname", "type": "string"},
        {"name": "Created At", "type": "string", "format": "date-time"},
    ]
    rows = [
        {
            "cells": [
                o["metadata"]["name"],
                o["metadata"]["uid"][:8],
                o["status"]["repository"],
                o["status"]["hostname"],
                o["metadata"]["creationTimestamp"],
            ],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o["metadata"],
            },
        }
        for o in items
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    }


def split_name(name: str) -> tuple[str, str] | None:
    """`<repository>-<id8>` -> (repository, id8); None when it is not such a name."""
    repo, _, short = name.rpartition("-")
    return (repo, short) if repo and _SHORT.match(short) else None


def parse_selector(text: str | None) -> list[tuple[str, str, str]]:
    """`a=b,c!=d` -> [(key, op, value)]; ValueError for what it cannot read."""
    terms: list[tuple[str, str, str]] = []
    for raw in (text or "").split(","):
        term = raw.strip()
        if not term:
            continue
        for op in ("!=", "==", "="):
            key, sep, value = term.partition(op)
            if sep:
                terms.append((key.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            raise ValueError(f"label selector term {term!r} is not key=value or key!=value")
    return terms


def matches(labels: Mapping[str, str], terms: Sequence[tuple[str, str, str]]) -> bool:
    """Whether `labels` satisfy every selector term."""
    return all((labels.get(k) == v) == (op == "=") for k, op, v in terms)


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A `Status` failure document."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
