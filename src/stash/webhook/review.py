"""AdmissionReview v1 on the wire: strict decoding of requests, building of responses.

What it is for: turning the bytes the apiserver POSTs into an `AdmissionRequest` — or a
`BadReview` whose reason the server returns with HTTP 400 — and building the
AdmissionReview answers (allowed, allowed with a JSON patch, denied), with warnings.

Not for: deciding anything about the object (the mutating and validating handlers do).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "API_VERSION",
    "AdmissionRequest",
    "BadReview",
    "GroupVersionKind",
    "allowed",
    "denied",
    "parse_review",
]

API_VERSION = "admission.k8s.io/v1"
_OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
_MAX_WARNING = 512  # the apiserver truncates long warnings; keep ours readable


class BadReview(ValueError):
    """The request body is not an AdmissionReview v1 we can answer; the message says why."""


@dataclass(frozen=True)
class GroupVersionKind:
    """`request.kind`: what the object is (after matchPolicy conversion)."""

    group: str
    version: str
    kind: str


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of `AdmissionReview.request` the handlers use."""

    uid: str
    kind: GroupVersionKind
    resource: str
    sub_resource: str
    operation: str
    namespace: str
    name: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    dry_run: bool
    user_info: dict[str, Any] | None = None
    """`request.userInfo`: who the apiserver authenticated (only as trustworthy as the
    caller: the apiserver, when the network lets nobody else reach us)."""


def _field(obj: dict[str, Any], key: str, kind: type, where: str, *, required: bool) -> Any:
    if key not in obj or obj[key] is None:
        if required:
            raise BadReview(f"{where}.{key} is required")
        return None
    value = obj[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadReview(f"{where}.{key} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def parse_review(body: bytes, content_type: str = "application/json") -> AdmissionRequest:
    """Decode an AdmissionReview v1 request strictly; raise `BadReview` with the reason."""
    if content_type != "application/json":
        raise BadReview(f'content type must be application/json, got "{content_type}"')
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadReview(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadReview(f"body must be a JSON object, got {type(doc).__name__}")
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != "AdmissionReview":
        raise BadReview(
            f"expected apiVersion {API_VERSION} kind AdmissionReview, got "
            f"{doc.get('apiVersion')!r} {doc.get('kind')!r}"
        )
    req = _field(doc, "request", dict, "AdmissionReview", required=True)
    uid = _field(req, "uid", str, "request", required=True)
    if not uid:
        raise BadReview("request.uid must not be empty")
    kind = _field(req, "kind", dict, "request", required=True)
    gvk = GroupVersionKind(
        group=_field(kind, "group", str, "request.kind", required=False) or "",
        version=_field(kind, "version", str, "request.kind", required=True),
        kind=_field(kind, "kind", str, "request.kind", required=True),
    )
    resource = _field(req, "resource", dict, "request", required=True)
    operation = _field(req, "operation", str, "request", required=True)
    if operation not in _OPERATIONS:
        raise BadReview(
            f"request.operation must be one of {sorted(_OPERATIONS)}, got {operation!r}"
        )
    obj = _field(req, "object", dict, "request", required=False)
    old = _field(req, "oldObject", dict, "request", required=False)
    if operation in ("CREATE", "UPDATE") and obj is None:
        raise BadReview(f"request.object is required for {operation}")
    if operation == "UPDATE" and old is None:
        raise BadReview("request.oldObject is required for UPDATE")
    user_info = _field(req, "userInfo", dict, "request", required=False)
    return AdmissionRequest(
        uid=uid,
        kind=gvk,
        resource=_field(resource, "resource", str, "request.resource", required=True),
        sub_resource=_field(req, "subResource", str, "request", required=False) or "",
        operation=operation,
        namespace=_field(req, "namespace", str, "request", required=False) or "",
        name=_field(req, "name", str, "request", required=False) or "",
        object=obj,
        old_object=old,
        dry_run=bool(_field(req, "dryRun", bool, "request", required=False)),
        user_info=user_info,
    )


def _review(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _warnings(warnings: Sequence[str]) -> list[str]:
    return [w if len(w) <= _MAX_WARNING else w[: _MAX_WARNING - 3] + "..." for w in warnings]


def allowed(
    uid: str, patch: list[dict[str, Any]] | None = None, warnings: Sequence[str] = ()
) -> dict[str, Any]:
    """An AdmissionReview that admits the object, with a JSON patch when it is non-empty."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    if warnings:
        response["warnings"] = _warnings(warnings)
    return _review(response)


def denied(uid: str, message: str, code: int = 422, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """An AdmissionReview that refuses the object; `message` is what the user sees."""
    reason = {422: "Invalid", 403: "Forbidden", 500: "InternalError"}.get(code, "BadRequest")
    response: dict[str, Any] = {
        "uid": uid,
        "allowed": False,
        "status": {"status": "Failure", "code": code, "reason": reason, "message": message},
    }
    if warnings:
        response["warnings"] = _warnings(warnings)
    return _review(response)
