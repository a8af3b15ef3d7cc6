"""The admission patch: applied to the original it gives exactly the mutated object."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from stash.webhook.patch import json_patch

scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, "a", "b", ""])
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d", "~x", "y/z"]), inner, max_size=4)
    ),
    max_leaves=25,
)


@st.composite
def edited(draw: st.DrawFn) -> tuple[Any, Any]:
    """A document and a version of it with random edits (most members unchanged)."""
    original = draw(documents)

    def edit(value: Any) -> Any:
        choice = draw(st.integers(0, 9))
        if choice == 0:
            return draw(documents)
        if isinstance(value, dict):
            out = {k: edit(v) for k, v in value.items() if draw(st.integers(0, 7))}
            if draw(st.booleans()):
                out[draw(st.sampled_from(["a", "new", "~x"]))] = draw(documents)
            return out
        if isinstance(value, list):
            out_list = [edit(v) for v in value]
            if draw(st.booleans()):
                out_list.insert(draw(st.integers(0, len(out_list))), draw(documents))
            return out_list
        return value

    return original, edit(copy.deepcopy(original))


def _json(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True)


@settings(max_examples=400, deadline=None)
@given(pair=edited())
def test_the_patch_turns_the_original_into_exactly_the_mutated(pair: tuple[Any, Any]) -> None:
    original, mutated = pair
    patch = json_patch(original, mutated)
    assert _json(jsonpatch.apply_patch(original, patch)) == _json(mutated)
    assert (patch == []) == (_json(original) == _json(mutated))


def test_an_injection_patches_only_what_it_changed() -> None:
    original = {
        "metadata": {"name": "web", "managedFields": [{"manager": "kubectl"}]},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "app"}]}}},
        "status": {"replicas": 1},
    }
    mutated = copy.deepcopy(original)
    mutated["metadata"]["annotations"] = {"k/x": "v"}
    mutated["spec"]["template"]["spec"]["containers"].append({"name": "stash"})
    assert json_patch(original, mutated) == [
        {"op": "add", "path": "/metadata/annotations", "value": {"k/x": "v"}},
        {"op": "add", "path": "/spec/template/spec/containers/1", "value": {"name": "stash"}},
    ]


def test_keys_are_escaped_and_removed_items_go_from_the_end() -> None:
    original = {"a~b/c": [1, 2, 3]}
    mutated = {"a~b/c": [1]}
    assert json_patch(original, mutated) == [
        {"op": "remove", "path": "/a~0b~1c/2"},
        {"op": "remove", "path": "/a~0b~1c/1"},
    ]


def test_json_types_are_not_conflated() -> None:
    assert json_patch({"a": 1}, {"a": True}) == [{"op": "replace", "path": "/a", "value": True}]
    assert json_patch({"a": 1}, {"a": 1.0}) == [{"op": "replace", "path": "/a", "value": 1.0}]
    assert json_patch({"a": {"b": 1}}, {"a": {"b": 1}}) == []
