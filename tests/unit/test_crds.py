"""The generated CRDs: committed, structural, and served the way stash-api.md §1 says.

Covers: manifests/crds is byte-for-byte what `stash crds` generates now; every schema
node is structural (a type, or int-or-string, or preserve-unknown-fields; no $ref,
unions or nullable; additionalProperties only for maps); names, scope, short names,
categories, printer columns and subresources per kind; the defaults the apiserver
fills in; every fixture is accepted by its CRD.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from stash.api import KINDS
from stash.api.crdgen import crd, crds, file_name, render
from stash.api.k8s import INT_OR_STRING, PRESERVE
from tests.unit.api_fixtures import fixture_docs

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "crds"
AGE = ("Age", "date", ".metadata.creationTimestamp")

# stash-api.md §1, written out independently of the KINDS registry.
EXPECTED = {
    "Repository": (
        "v1alpha1",
        "repositories",
        "Namespaced",
        ["repo"],
        False,
        True,
        [
            ("Integrity", "boolean", ".status.integrity"),
            ("Size", "string", ".status.totalSize"),
            ("Snapshot-Count", "integer", ".status.snapshotCount"),
            ("Last-Successful-Backup", "date", ".status.lastBackupTime"),
            AGE,
        ],
    ),
    "BackupConfiguration": (
        "v1beta1",
        "backupconfigurations",
        "Namespaced",
        ["bc"],
        True,
        True,
        [
            ("Task", "string", ".spec.task.name"),
            ("Schedule", "string", ".spec.schedule"),
            ("Paused", "boolean", ".spec.paused"),
            ("Next-Backup", "string", ".status.nextBackupTime"),
            ("Phase", "string", ".status.phase"),
            AGE,
        ],
    ),
    "BackupSession": (
        "v1beta1",
        "backupsessions",
        "Namespaced",
        [],
        True,
        True,
        [
            ("Invoker-Type", "string", ".spec.invoker.kind"),
            ("Invoker-Name", "string", ".spec.invoker.name"),
            ("Phase", "string", ".status.phase"),
            ("Duration", "string", ".status.sessionDuration"),
            AGE,
        ],
    ),
    "RestoreSession": (
        "v1beta1",
        "restoresessions",
        "Namespaced",
        ["restore"],
        True,
        True,
        [
            ("Repository", "string", ".spec.repository.name"),
            ("Phase", "string", ".status.phase"),
            ("Duration", "string", ".status.sessionDuration"),
            AGE,
        ],
    ),
    "BackupBatch": (
        "v1beta1",
        "backupbatches",
        "Namespaced",
        [],
        True,
        True,
        [
            ("Schedule", "string", ".spec.schedule"),
            ("Paused", "boolean", ".spec.paused"),
            ("Next-Backup", "string", ".status.nextBackupTime"),
            ("Phase", "string", ".status.phase"),
            AGE,
        ],
    ),
    "RestoreBatch": (
        "v1beta1",
        "restorebatches",
        "Namespaced",
        [],
        True,
        True,
        [
            ("Repository", "string", ".spec.repository.name"),
            ("Phase", "string", ".status.phase"),
            ("Duration", "string", ".status.sessionDuration"),
            AGE,
        ],
    ),
    "BackupBlueprint": (
        "v1beta1",
        "backupblueprints",
        "Cluster",
        ["bb"],
        False,
        False,
        [("Task", "string", ".spec.task.name"), ("Schedule", "string", ".spec.schedule"), AGE],
    ),
    "Function": ("v1beta1", "functions", "Cluster", ["fn"], False, False, [AGE]),
    "Task": ("v1beta1", "tasks", "Cluster", ["task"], False, False, [AGE]),
}


def test_committed_manifests_are_what_the_generator_writes() -> None:
    expected = {file_name(info): render(crd(info)) for info in KINDS.values()}
    committed = {p.name: p.read_text(encoding="utf-8") for p in MANIFESTS.glob("stash.*.yaml")}
    assert sorted(committed) == sorted(expected), "run `make manifests`"
    for name, text in expected.items():
        assert committed[name] == text, f"{name} is stale: run `make manifests`"


def test_generation_is_deterministic() -> None:
    assert [render(d) for d in crds()] == [render(d) for d in crds()]


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_kind_is_served_as_the_spec_says(kind: str) -> None:
    version, plural, scope, short, all_cat, status, columns = EXPECTED[kind]
    doc = crd(KINDS[kind])
    spec = doc["spec"]
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["metadata"]["name"] == f"{plural}.stash.appscode.com"
    assert spec["group"] == "stash.appscode.com"
    assert spec["scope"] == scope
    names = spec["names"]
    assert (names["kind"], names["plural"], names["listKind"]) == (kind, plural, f"{kind}List")
    assert names.get("shortNames", []) == short
    assert names["categories"] == ["stash", "appscode", *(["all"] if all_cat else [])]
    [ver] = spec["versions"]
    assert (ver["name"], ver["served"], ver["storage"]) == (version, True, True)
    assert ("status" in ver.get("subresources", {})) is status
    assert ("status" in ver["schema"]["openAPIV3Schema"]["properties"]) is status
    got = [(c["name"], c["type"], c["jsonPath"]) for c in ver["additionalPrinterColumns"]]
    assert got == columns


def _nodes(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found.extend(_nodes(sub, f"{path}.{name}"))
    if "items" in schema:
        found.extend(_nodes(schema["items"], f"{path}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        found.extend(_nodes(schema["additionalProperties"], f"{path}{{}}"))
    return found


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural(kind: str) -> None:
    [ver] = crd(KINDS[kind])["spec"]["versions"]
    root = ver["schema"]["openAPIV3Schema"]
    assert root["type"] == "object"
    assert root["properties"]["metadata"] == {"type": "object"}
    forbidden = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "nullable", "title"}
    for path, node in _nodes(root, kind):
        assert not forbidden & node.keys(), path
        if node.get(INT_OR_STRING):
            assert "type" not in node, path
            continue
        assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        if node["type"] == "array":
            assert "items" in node, path
        if "additionalProperties" in node:
            assert node["type"] == "object" and "properties" not in node, path
        if PRESERVE in node:
            assert node[PRESERVE] is True and node["type"] == "object", path
        for key in node:
            assert key in _ALLOWED_KEYS, f"{path}: {key}"


_ALLOWED_KEYS = {
    "type",
    "properties",
    "items",
    "required",
    "enum",
    "format",
    "default",
    "additionalProperties",
    PRESERVE,
    INT_OR_STRING,
}


def test_defaults_the_apiserver_fills_in_are_valid_enum_values() -> None:
    bc = crd(KINDS["BackupConfiguration"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = bc["properties"]["spec"]["properties"]
    assert spec["driver"]["default"] == "Restic"
    assert (
        spec["hooks"]["properties"]["postBackup"]["properties"]["executionPolicy"]["default"]
        == "Always"
    )
    assert "default" not in spec["retentionPolicy"]["properties"]["prune"]
    for kind in KINDS:
        [ver] = crd(KINDS[kind])["spec"]["versions"]
        for path, node in _nodes(ver["schema"]["openAPIV3Schema"], kind):
            if "default" in node:
                assert node["default"] in node["enum"], path


DOCS = fixture_docs()


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[name for name, _ in DOCS])
def test_crd_accepts_every_fixture(name: str, doc: dict[str, Any]) -> None:
    [ver] = crd(KINDS[doc["kind"]])["spec"]["versions"]
    validator = jsonschema.Draft7Validator(ver["schema"]["openAPIV3Schema"])
    assert [e.message for e in validator.iter_errors(doc)] == []
