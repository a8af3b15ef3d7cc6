"""Where session metrics go: a Pushgateway, or the operator's own /metrics.

What it is for: `push()`, one POST of a registry to a Pushgateway (its "add"
semantics: metrics of the same name in the group are replaced) under a grouping key,
bounded by a timeout, with an outcome that says what happened (`PushOutcome`: pushed,
or failed with the reason — unreachable, timed out, refused); `LocalGateway`, the same
semantics kept in the operator's memory and served on its /metrics when no Pushgateway
is configured (`SessionMetricsSink` holds either choice).

Not for: which families exist (`families`) or the conditions a push is recorded in
(the session reconcilers and the agent's post-backup actions).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from yarl import URL

__all__ = [
    "DEFAULT_PUSH_TIMEOUT",
    "LocalGateway",
    "PushOutcome",
    "SessionMetricsSink",
    "grouping_path",
    "push",
    "shown_url",
]

log = logging.getLogger(__name__)

DEFAULT_PUSH_TIMEOUT = 10.0
"""Seconds one push may take, connecting included."""

PushState = Literal["pushed", "failed"]


@dataclass(frozen=True)
class PushOutcome:
    """What one push did: `pushed`, or `failed` with a message saying why."""

    state: PushState
    message: str

    @property
    def ok(self) -> bool:
        """True when the metrics are in the Pushgateway."""
        return self.state == "pushed"


def shown_url(url: str) -> str:
    """`url` without user and password (safe to log and to write into a condition)."""
    try:
        return str(URL(url).with_user(None))
    except (ValueError, TypeError):
        return "(unparseable URL)"


def grouping_path(grouping: Mapping[str, str]) -> str:
    """The Pushgateway path of a grouping key: `/metrics/job/<job>/<label>/<value>...`;
    values that are empty or hold a `/` are base64-encoded as the Pushgateway asks."""
    parts = ["metrics"]
    for name, value in grouping.items():
        if value and "/" not in value:
            parts += [name, quote(value, safe="")]
        else:
            encoded = base64.urlsafe_b64encode(value.encode()).decode() or "="
            parts += [f"{name}@base64", encoded]
    return "/" + "/".join(parts)


async def push(
    url: str,
    grouping: Mapping[str, str],
    registry: CollectorRegistry,
    timeout: float = DEFAULT_PUSH_TIMEOUT,
) -> PushOutcome:
    """POST `registry` to the Pushgateway at `url` under `grouping`; never raises for
    a Pushgateway that is down, slow or refusing."""
    where = shown_url(url)
    target = url.rstrip("/") + grouping_path(grouping)
    body = generate_latest(registry)
    limit = aiohttp.ClientTimeout(total=timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=limit) as session,
            # The format `generate_latest` writes, as prometheus_client's own push sends it.
            session.post(
                target, data=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
            ) as resp,
        ):
            text = (await resp.text())[:300].strip()
            if 200 <= resp.status < 300:
                return PushOutcome("pushed", f"pushed to the Pushgateway at {where}")
            return PushOutcome(
                "failed", f"the Pushgateway at {where} refused them: HTTP {resp.status} {text}"
            )
    except TimeoutError:
        return PushOutcome("failed", f"the Pushgateway at {where} did not answer in {timeout:g}s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        log.debug("pushing to %s failed", where, exc_info=True)
        why = str(exc).replace(url, where) or exc.__class__.__name__
        return PushOutcome("failed", f"the Pushgateway at {where} could not be reached: {why}")


class LocalGateway(Collector):
    """Pushgateway "add" semantics kept in memory, collected onto the operator's
    /metrics: a group (grouping key) holds the last families added to it by name. The
    grouping labels are not added to the samples (the scrape adds its own `job`)."""

    def __init__(self) -> None:
        self._groups: dict[tuple[tuple[str, str], ...], dict[str, Metric]] = {}

    def add(self, grouping: Mapping[str, str], registry: CollectorRegistry) -> None:
        """Replace the group's families that `registry` has, keep the others."""
        group = self._groups.setdefault(tuple(sorted(grouping.items())), {})
        for family in registry.collect():
            group[family.name] = family

    def forget(self, job: str) -> None:
        """Drop every group of grouping key `job` (its invoker is gone)."""
        for key in [k for k in self._groups if ("job", job) in k]:
            del self._groups[key]

    def collect(self) -> Iterator[Metric]:
        """One family per name, holding the samples of every group."""
        merged: dict[str, Metric] = {}
        for _key, families in sorted(self._groups.items()):
            for name, family in families.items():
                out = merged.get(name)
                if out is None:
                    out = merged[name] = Metric(name, family.documentation, family.type)
                out.samples.extend(family.samples)
        yield from merged.values()


@dataclass
class SessionMetricsSink:
    """Where the operator's session metrics go: the Pushgateway at `pushgateway_url`,
    or (None) `local`, served on the operator's /metrics with `exposition()`."""

    pushgateway_url: str | None = None
    timeout: float = DEFAULT_PUSH_TIMEOUT
    local: LocalGateway = field(default_factory=LocalGateway)

    def __post_init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self.local)

    def exposition(self) -> bytes:
        """The locally kept families in the text format (empty when there are none)."""
        return generate_latest(self._registry)
