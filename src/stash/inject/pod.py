"""Small, copy-safe edits of Kubernetes objects: find the pod template, upsert or remove
named list items, set and drop annotations, keep track of injected pull secrets.

Not for: deciding what to inject (`stash.inject`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stash.contract.names import ANN_PULL_SECRETS, INIT_CONTAINER, SIDECAR, TMP_VOLUME

JSON = dict[str, Any]


def clone(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars): several times faster than
    `copy.deepcopy`, which matters on the admission path."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def ensure_template(out: JSON) -> tuple[JSON, JSON]:
    """(metadata, pod template) of `out`, creating what is missing, in place (for
    injection). A Pod is its own template (GitOps `pod` mode)."""
    meta = out.setdefault("metadata", {})
    if out.get("kind") == "Pod":
        out.setdefault("spec", {})
        return meta, out
    template = out.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {})
    template.setdefault("spec", {})
    return meta, template


def template_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod template of `obj` as it is (None when absent); a Pod is its own."""
    if obj.get("kind") == "Pod":
        return obj
    spec = obj.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    return template if isinstance(template, dict) else None


def pod_spec_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The pod spec of `obj`'s template (read-only view; empty when absent)."""
    template = template_of(obj)
    spec = template.get("spec") if template else None
    return spec if isinstance(spec, dict) else {}


def set_annotation(meta: JSON, key: str, value: str) -> None:
    """Set one annotation on `meta`, creating the map if needed."""
    anns = meta.get("annotations")
    if not isinstance(anns, dict):
        anns = meta["annotations"] = {}
    anns[key] = value


def drop_annotations(meta: JSON, *keys: str) -> None:
    """Remove annotations; remove the map when that leaves it empty."""
    anns = meta.get("annotations")
    if not isinstance(anns, dict) or not any(key in anns for key in keys):
        return
    for key in keys:
        anns.pop(key, None)
    if not anns:
        del meta["annotations"]


def upsert_named(items: list[JSON], item: JSON, *, prepend: bool = False) -> None:
    """Replace the item with the same name where it stands, else append (or prepend)."""
    for i, existing in enumerate(items):
        if existing.get("name") == item["name"]:
            items[i] = item
            return
    if prepend:
        items.insert(0, item)
    else:
        items.append(item)


def remove_named(spec: JSON, field: str, name: str) -> None:
    """Remove the named item from `spec[field]`; remove the field when that leaves it empty."""
    items = spec.get(field)
    if not isinstance(items, list):
        return
    kept = [x for x in items if not (isinstance(x, dict) and x.get("name") == name)]
    if len(kept) == len(items):
        return
    if kept:
        spec[field] = kept
    else:
        del spec[field]


def has_named(spec: JSON, field: str, name: str) -> bool:
    """True when `spec[field]` has an item with this name."""
    return any(isinstance(x, dict) and x.get("name") == name for x in spec.get(field) or [])


def list_field(spec: JSON, field: str) -> list[JSON]:
    """`spec[field]` as a list, created empty when absent."""
    items = spec.get(field)
    if not isinstance(items, list):
        items = spec[field] = []
    return items


def sync_pull_secrets(template: JSON, wanted: list[str]) -> None:
    """Append `wanted` imagePullSecrets that are missing; drop ones we added earlier and
    no longer want; remember which ones are ours in ANN_PULL_SECRETS."""
    spec = template["spec"]
    meta = template.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    recorded = set(
        filter(None, (meta.get("annotations") or {}).get(ANN_PULL_SECRETS, "").split(","))
    )
    stale = recorded - set(wanted)
    secrets = [
        s
        for s in spec.get("imagePullSecrets") or []
        if not (isinstance(s, dict) and s.get("name") in stale)
    ]
    present = {s.get("name") for s in secrets if isinstance(s, dict)}
    ours = recorded & set(wanted)
    for name in wanted:
        if name not in present:
            secrets.append({"name": name})
            present.add(name)
            ours.add(name)
    if secrets != (spec.get("imagePullSecrets") or []):
        if secrets:
            spec["imagePullSecrets"] = secrets
        else:
            del spec["imagePullSecrets"]
    if ours:
        template["metadata"] = meta
        set_annotation(meta, ANN_PULL_SECRETS, ",".join(sorted(ours)))
    else:
        drop_annotations(meta, ANN_PULL_SECRETS)


def drop_shared_parts(template: JSON) -> None:
    """Remove the scratch volume and our pull secrets once no agent container is left."""
    spec = template["spec"]
    if has_named(spec, "containers", SIDECAR) or has_named(spec, "initContainers", INIT_CONTAINER):
        return
    remove_named(spec, "volumes", TMP_VOLUME)
    sync_pull_secrets(template, [])
