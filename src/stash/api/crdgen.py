"""Generate the apiextensions.k8s.io/v1 CustomResourceDefinitions from the API models.

What it is for: one generator for all kinds. It takes pydantic's JSON schema of a kind
and rewrites it into a *structural* OpenAPI v3 schema that kube-apiserver accepts:
`$ref`s inlined, `Optional[X]` collapsed to plain `X` (not required), no `nullable`,
no titles or Python defaults, `additionalProperties` only for maps, and
`x-kubernetes-preserve-unknown-fields` where Kubernetes types are embedded (models
that keep unknown fields). Names, scope, printer columns etc. come from `KINDS`.

Not for: installing CRDs into a cluster (that is the caller's job).
"""

from __future__ import annotations

from typing import Any

import yaml

from stash.api import CRD_KINDS, KindInfo
from stash.api.base import CRD_DEFAULT
from stash.api.k8s import PRESERVE

__all__ = ["crd", "crds", "file_name", "render", "render_stream", "schema"]

# Keys of pydantic's schema that carry no meaning for the apiserver (or mislead it:
# Python defaults such as `prune: false` are not CRD defaults).
_DROPPED = frozenset({"title", "default", "description", "$defs", "examples"})


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline `$ref` and collapse `anyOf [X, null]` until `node` is one concrete schema."""
    node = dict(node)
    while True:
        if "$ref" in node:
            name = node.pop("$ref").rsplit("/", 1)[-1]
            node = {**defs[name], **node}
            continue
        if "anyOf" in node:
            options = [o for o in node.pop("anyOf") if o != {"type": "null"}]
            if len(options) != 1:
                raise ValueError(f"cannot express a union of {options!r} in a structural schema")
            node = {**options[0], **node}
            continue
        return node


def _structural(raw: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one pydantic schema node (and its children) into a structural schema node."""
    node = _resolve(raw, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == CRD_DEFAULT:
            out["default"] = value
        elif key == "properties":
            out["properties"] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out["items"] = _structural(value, defs)
        elif key == "additionalProperties":
            if value is True:
                # A model that keeps unknown fields: an embedded Kubernetes type.
                out[PRESERVE] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _structural(value, defs)
        elif key == "required":
            out["required"] = sorted(value)
        else:
            out[key] = value
    return out


def schema(info: KindInfo) -> dict[str, Any]:
    """Return the structural `openAPIV3Schema` of one kind."""
    raw = info.model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    top = _structural(raw, defs)
    properties = top["properties"]
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"type": "string"}
    properties["metadata"] = {"type": "object"}  # the apiserver owns ObjectMeta
    top.pop("required", None)
    return top


def crd(info: KindInfo) -> dict[str, Any]:
    """Return the CustomResourceDefinition of one kind as a plain dict."""
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
        "categories": list(info.categories),
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    version: dict[str, Any] = {
        "name": info.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema(info)},
        "additionalPrinterColumns": [
            {"name": c.name, "type": c.type, "jsonPath": c.json_path} for c in info.columns
        ],
    }
    if info.has_status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{info.group}",
            "labels": {"app.kubernetes.io/name": "stash"},
        },
        "spec": {
            "group": info.group,
            "names": names,
            "scope": info.scope,
            "versions": [version],
        },
    }


def crds() -> list[dict[str, Any]]:
    """Return the CRDs of every kind in `CRD_KINDS`, in registry order."""
    return [crd(info) for info in CRD_KINDS.values()]


def file_name(info: KindInfo) -> str:
    """Return the manifest file name of a kind's CRD, `<group>_<plural>.yaml`."""
    return f"{info.group}_{info.plural}.yaml"


def render(doc: dict[str, Any]) -> str:
    """Render one manifest as YAML with sorted keys (byte-for-byte stable)."""
    return yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, width=100)


def render_stream(docs: list[dict[str, Any]]) -> str:
    """Render manifests as one multi-document YAML stream."""
    return "".join(f"---\n{render(doc)}" for doc in docs)
