"""The base model every Stash API type derives from, and the scalar types they share.

What it is for: one place that fixes how our pydantic models look on the wire —
camelCase keys (snake_case attributes), unknown fields dropped like a structural CRD
prunes them, `to_wire()` for the JSON/YAML an apiserver would store — and the scalar
annotations (`Int32`, `Int64`, `Time`, ...) that carry their CRD schema with them.

Not for: Kubernetes plumbing or any behaviour of the kinds themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "Bool",
    "Int32",
    "Int64",
    "StashModel",
    "Time",
    "crd_default",
]

CRD_DEFAULT = "x-stash-crd-default"
"""Schema key carrying a default the CRD (not the Python model) applies; see crdgen."""


def crd_default(value: str) -> dict[str, Any]:
    """Field `json_schema_extra` for a default the apiserver fills in, as upstream does.

    The Python attribute stays None when unset, so objects round-trip unchanged.
    """
    return {CRD_DEFAULT: value}


class StashModel(BaseModel):
    """Base of all Stash API models: camelCase on the wire, unknown fields pruned."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
    )

    def to_wire(self) -> dict[str, Any]:
        """Return the object as the apiserver would store it: camelCase, no unset fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _format_time(value: datetime) -> str:
    # metav1.Time is RFC 3339 in UTC; naive datetimes are taken to be UTC already.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


Time = Annotated[
    datetime,
    PlainSerializer(_format_time, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A `metav1.Time`: RFC 3339 on the wire, a `datetime` in Python."""

# Strict, so `"5"` or `"yes"` fail the way the CRD schema makes the apiserver reject them.
Int32 = Annotated[
    StrictInt,
    Field(ge=-(2**31), le=2**31 - 1),
    WithJsonSchema({"type": "integer", "format": "int32"}),
]
"""A Go `int32` field."""

Int64 = Annotated[StrictInt, WithJsonSchema({"type": "integer", "format": "int64"})]
"""A Go `int64` field."""

Bool = StrictBool
"""A Go `bool` field (no "yes"/"1" coercion)."""
