"""The API models read and write Stash objects without losing or inventing anything.

Covers: every fixture (spec scenarios S1-S6, the spec's skeletons, one "everything"
object per kind) parses and serialises back unchanged; together they set every field
of every model; unknown fields are dropped exactly where the generated CRD prunes them;
bad values fail in the model *and* in the CRD schema, naming the field; and any object
the CRD schema accepts survives a round trip through the models (hypothesis).
"""

from __future__ import annotations

import copy
import string
import types
import typing
from datetime import datetime
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from stash.api import KINDS, KindInfo
from stash.api.base import StashModel
from stash.api.crdgen import schema as crd_schema
from stash.api.k8s import INT_OR_STRING, PRESERVE
from tests.unit.api_fixtures import fixture_docs

DOCS = fixture_docs()
SCHEMAS = {kind: crd_schema(info) for kind, info in KINDS.items()}


def _parse(doc: dict[str, Any]) -> StashModel:
    return KINDS[doc["kind"]].model.model_validate(doc)


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[name for name, _ in DOCS])
def test_fixture_round_trips_unchanged(name: str, doc: dict[str, Any]) -> None:
    info = KINDS[doc["kind"]]
    assert doc["apiVersion"] == info.api_version
    assert _parse(doc).to_wire() == doc


def test_every_kind_has_an_everything_fixture() -> None:
    names = {name.split("#")[0] for name, _ in DOCS}
    missing = [k for k in KINDS if f"everything-{k.lower()}.yaml" not in names]
    assert not missing


# --- every field of every model is exercised by some fixture -------------------------


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    found: list[type[BaseModel]] = []
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def _owner(cls: type[BaseModel], field: str) -> type[BaseModel]:
    """The class that declares `field` (so inherited fields count once)."""
    for klass in reversed(cls.__mro__):
        if field in vars(klass).get("__annotations__", {}):
            return klass
    return cls


def _all_fields() -> set[tuple[str, str]]:
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [info.model for info in KINDS.values()]
    fields: set[tuple[str, str]] = set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for name, info in cls.model_fields.items():
            fields.add((_owner(cls, name).__name__, name))
            todo.extend(_models_in(info.annotation))
    return fields


def _set_fields(value: Any, out: set[tuple[str, str]]) -> None:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            sub = getattr(value, name)
            if sub is not None:
                out.add((_owner(type(value), name).__name__, name))
                _set_fields(sub, out)
    elif isinstance(value, list):
        for item in value:
            _set_fields(item, out)


def test_fixtures_set_every_field_of_every_model() -> None:
    covered: set[tuple[str, str]] = set()
    for _, doc in DOCS:
        _set_fields(_parse(doc), covered)
    assert sorted(_all_fields() - covered) == []


# --- unknown fields: dropped exactly where the CRD prunes them -------------------------


def _prune(value: Any, schema: dict[str, Any]) -> Any:
    """What kube-apiserver keeps of `value` under a structural schema."""
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            return {
                k: _prune(v, props[k]) if k in props else v
                for k, v in value.items()
                if k in props or schema.get(PRESERVE)
            }
        if isinstance(schema.get("additionalProperties"), dict):
            return {k: _prune(v, schema["additionalProperties"]) for k, v in value.items()}
        return value
    if isinstance(value, list) and "items" in schema:
        return [_prune(v, schema["items"]) for v in value]
    return value


def _object_nodes(
    value: Any, schema: dict[str, Any], path: tuple[Any, ...] = ()
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Paths of the objects in `value` that have a schema of their own."""
    found: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    if isinstance(value, dict) and "properties" in schema:
        found.append((path, schema))
        for k, v in value.items():
            if k in schema["properties"] and (*path, k) != ("metadata",):
                found.extend(_object_nodes(v, schema["properties"][k], (*path, k)))
    elif isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            found.extend(_object_nodes(v, schema["items"], (*path, i)))
    return found


def test_unknown_fields_are_dropped_where_the_crd_prunes_them() -> None:
    pruned = kept = 0
    for name, doc in DOCS:
        schema = SCHEMAS[doc["kind"]]
        for path, node_schema in _object_nodes(doc, schema):
            mutated = copy.deepcopy(doc)
            node = mutated
            for step in path:
                node = node[step]
            node["someFutureField"] = {"nested": [1, "two"]}
            expected = _prune(mutated, schema)
            got = _parse(mutated).to_wire()
            assert got == expected, f"{name} at {'.'.join(map(str, path))}"
            if node_schema.get(PRESERVE):
                kept += 1
            else:
                pruned += 1
    assert pruned > 100
    assert kept > 10


_EVERYTHING_BC = "everything-backupconfiguration.yaml#0"


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("spec", False),
        ("spec.target", False),
        ("spec.target.ref", False),
        ("spec.retentionPolicy", False),
        ("spec.hooks.preBackup", False),
        ("spec.hooks.preBackup.exec", False),
        ("spec.runtimeSettings.pod", False),
        ("spec.runtimeSettings.container.nice", False),
        ("status", False),
        ("status.conditions.0", False),
        # Embedded Kubernetes types keep what they do not name.
        ("metadata", True),
        ("spec.target.volumeMounts.0", True),
        ("spec.runtimeSettings.pod.affinity", True),
        ("spec.runtimeSettings.container.env.1", True),
        ("spec.interimVolumeTemplate.spec", True),
        ("spec.interimVolumeTemplate.metadata", True),
    ],
)
def test_unknown_field_is_dropped_in_stash_types_kept_in_kubernetes_types(
    path: str, kept: bool
) -> None:
    doc = _fixture(_EVERYTHING_BC)
    _set(doc, f"{path}.someFutureField", "x")
    wire = _parse(doc).to_wire()
    node: Any = wire
    for step in path.split("."):
        node = node[int(step)] if step.isdigit() else node[step]
    assert ("someFutureField" in node) is kept


# --- bad input: rejected by model and CRD alike, naming the field ----------------------


def _fixture(name: str) -> dict[str, Any]:
    return copy.deepcopy(dict(DOCS)[name])


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = doc
    for step in parents:
        node = node[step]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()

BAD_INPUT = [
    ("s2-statefulset.yaml#1", "spec.retentionPolicy.keepLast", "five"),
    ("s2-statefulset.yaml#1", "spec.retentionPolicy.name", _DELETE),
    ("s2-statefulset.yaml#1", "spec.retentionPolicy.prune", "yes"),
    ("s2-statefulset.yaml#1", "spec.retentionPolicy", _DELETE),
    ("s2-statefulset.yaml#1", "spec.backupHistoryLimit", "3"),
    ("s2-statefulset.yaml#1", "spec.target.volumeMounts.0.mountPath", _DELETE),
    ("s2-statefulset.yaml#1", "spec.target.paths", "/var/lib/data"),
    ("s2-statefulset.yaml#1", "spec.driver", "Kopia"),
    ("s2-statefulset.yaml#0", "spec.backend.s3.bucket", _DELETE),
    ("s2-statefulset.yaml#0", "spec.backend.s3.endpoint", _DELETE),
    ("repository-skeleton.yaml#0", "spec.usagePolicy.allowedNamespaces.from", "Some"),
    ("repository-skeleton.yaml#0", "status.snapshotCount", "15"),
    ("blueprint-resolution.yaml#1", "spec.backend.local.mountPath", _DELETE),
    ("s5-batch.yaml#0", "spec.executionOrder", "Random"),
    ("s5-batch.yaml#0", "spec.hooks.postBackup.executionPolicy", "Sometimes"),
    ("s5-batch.yaml#0", "spec.hooks.preBackup.httpGet.port", _DELETE),
    ("s6-postgres.yaml#0", "spec.task.params.0.value", _DELETE),
    ("s6-postgres.yaml#0", "spec.task.name", _DELETE),
    (
        "everything-restoresession.yaml#0",
        "spec.hooks.postRestore.executionPolicy",
        "OnFinalRetryFailure",
    ),
    ("backupsession-status.yaml#0", "status.phase", "Done"),
    ("backupsession-status.yaml#0", "status.targets.0.stats.1.phase", "Running"),
    ("backupsession-status.yaml#0", "status.conditions.0.status", "Maybe"),
    ("backupsession-status.yaml#0", "spec.invoker.kind", _DELETE),
    ("everything-restorebatch.yaml#0", "status.members.1.phase", "Invalid"),
    ("pvc-task.yaml#0", "spec.image", _DELETE),
]


@pytest.mark.parametrize(("name", "path", "value"), BAD_INPUT, ids=[p for _, p, _ in BAD_INPUT])
def test_bad_input_fails_in_model_and_crd_naming_the_field(
    name: str, path: str, value: Any
) -> None:
    doc = _fixture(name)
    _set(doc, path, value)
    with pytest.raises(ValidationError) as caught:
        _parse(doc)
    assert path in str(caught.value)
    errors = list(jsonschema.Draft7Validator(SCHEMAS[doc["kind"]]).iter_errors(doc))
    assert errors, f"the CRD schema accepts {path}={value!r}"


# --- anything the CRD schema accepts, the models keep ----------------------------------

_WORDS = st.text(alphabet=string.ascii_letters + string.digits + "-./_ ", max_size=8)
_TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
)


def _from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if schema.get(INT_OR_STRING):
        return st.one_of(st.integers(0, 65535), _WORDS)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return _TIMES if schema.get("format") == "date-time" else _WORDS
    if kind == "integer":
        bits = 31 if schema.get("format") == "int32" else 63
        return st.integers(-(2**bits), 2**bits - 1)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(_from_schema(schema["items"]), max_size=2)
    assert kind == "object", schema
    props = schema.get("properties")
    if props is not None:
        required = set(schema.get("required", []))
        if "prune" in props:  # RetentionPolicy always serialises prune
            required.add("prune")
        return st.fixed_dictionaries(
            {k: _from_schema(v) for k, v in props.items() if k in required},
            optional={k: _from_schema(v) for k, v in props.items() if k not in required},
        )
    if isinstance(schema.get("additionalProperties"), dict):
        return st.dictionaries(_WORDS, _from_schema(schema["additionalProperties"]), max_size=2)
    assert schema.get(PRESERVE), schema
    return st.dictionaries(_WORDS, st.one_of(_WORDS, st.integers(), st.booleans()), max_size=2)


def _objects(info: KindInfo) -> st.SearchStrategy[dict[str, Any]]:
    props = SCHEMAS[info.kind]["properties"]
    return st.fixed_dictionaries(
        {
            "apiVersion": st.just(info.api_version),
            "kind": st.just(info.kind),
            "metadata": st.fixed_dictionaries({"name": _WORDS}),
        },
        optional={k: _from_schema(props[k]) for k in ("spec", "status") if k in props},
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_whatever_the_crd_accepts_survives_the_models(kind: str) -> None:
    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(obj=_objects(KINDS[kind]))
    def check(obj: dict[str, Any]) -> None:
        assert not list(jsonschema.Draft7Validator(SCHEMAS[kind]).iter_errors(obj))
        assert _parse(obj).to_wire() == obj

    check()
