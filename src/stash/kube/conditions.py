"""Status conditions: set, read and compare (type/status/reason/message/time/generation).

Pure functions over lists of `stash.api.common.Condition`. `lastTransitionTime` changes
only when the status changes, as Kubernetes conventions require.
"""

from __future__ import annotations

import datetime as dt

from stash.api.common import Condition

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


def _status(value: bool | str) -> str:
    if isinstance(value, bool):
        return TRUE if value else FALSE
    return value


def set_condition(
    conditions: list[Condition] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str = "",
    *,
    observed_generation: int | None = None,
    now: dt.datetime | None = None,
) -> list[Condition]:
    """Return a new list with condition `type_` set (replacing any previous one)."""
    now = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    new_status = _status(status)
    previous = get_condition(conditions, type_)
    changed = previous is None or previous.status != new_status
    cond = Condition(
        type=type_,
        status=new_status,
        reason=reason,
        message=message,
        last_transition_time=now if changed or previous is None else previous.last_transition_time,
        observed_generation=observed_generation,
    )
    out = [c if c.type != type_ else cond for c in conditions or []]
    return out if previous is not None else [*out, cond]


def get_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    """The condition of this type, or None."""
    for cond in conditions or []:
        if cond.type == type_:
            return cond
    return None


def is_true(conditions: list[Condition] | None, type_: str) -> bool:
    """True when the condition is present with status True."""
    cond = get_condition(conditions, type_)
    return cond is not None and cond.status == TRUE


def is_false(conditions: list[Condition] | None, type_: str) -> bool:
    """True when the condition is present with status False (absent is not False)."""
    cond = get_condition(conditions, type_)
    return cond is not None and cond.status == FALSE


def is_unknown(conditions: list[Condition] | None, type_: str) -> bool:
    """True when the condition is present with status Unknown."""
    cond = get_condition(conditions, type_)
    return cond is not None and cond.status == "Unknown"


def same(a: list[Condition] | None, b: list[Condition] | None) -> bool:
    """Equal apart from timestamps (to avoid writing a status that did not change)."""

    def key(cs: list[Condition] | None) -> list[tuple[object, ...]]:
        return sorted(
            (c.type, c.status, c.reason or "", c.message or "", c.observed_generation)
            for c in cs or []
        )

    return key(a) == key(b)
