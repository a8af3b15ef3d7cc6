"""The metric names the chart's alert rules and Grafana dashboard use.

What it is for: `used_metric_names()` — every metric name in
charts/stash/files/prometheus-rules.yaml (each alert's expr) and
charts/stash/files/dashboards/stash.json (panel targets and variable queries), with
where it is used; `promql_metric_names()`, the PromQL reading behind it (Helm and
Grafana placeholders removed); `APISERVER_METRICS`, the names the rules use that are
the kube-apiserver's, not ours. The unit test (tests/unit/test_chart_sources.py) checks
them against the families the code declares, the live test
(tests/integration/metrics/test_chart_names.py) against a real scrape.

Not for: rendering the chart (`chart_tools`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

__all__ = ["APISERVER_METRICS", "promql_metric_names", "rule_exprs", "used_metric_names"]

CHART = Path(__file__).resolve().parents[2] / "charts" / "stash"

APISERVER_METRICS = frozenset(
    {
        "apiserver_admission_webhook_fail_open_count",
        "apiserver_admission_webhook_rejection_count",
    }
)
"""Used by the StashWebhookErrors alert and exported by neither the operator nor the
agent: the kube-apiserver's admission-webhook counters (k8s.io/apiserver
pkg/admission/metrics/metrics.go, namespace "apiserver", subsystem "admission"), the
only place a failed call to the webhook is seen (docs/metrics.md)."""

_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (Helm and Grafana placeholders removed)."""
    text = re.sub(r"\{\{.*?\}\}", "0", expr, flags=re.DOTALL)  # Helm template actions
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)  # strings
    text = re.sub(r"\{[^{}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    text = re.sub(r"\boffset\s+[0-9a-z]+", " ", text)
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, after = match.group(0), text[match.end() :].lstrip()
        if word.lower() in _PROMQL_WORDS or after.startswith("("):
            continue
        if text[: match.start()].rstrip().endswith("$"):
            continue  # a Grafana variable
        names.add(word)
    return names


def rule_exprs() -> dict[str, str]:
    """alert name -> its PromQL (Helm template actions still in it)."""
    doc = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def _dashboard_exprs() -> list[str]:
    dash = json.loads((CHART / "files" / "dashboards" / "stash.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            found = re.fullmatch(r"label_values\((\w+)(\{.*\})?,\s*\w+\)", query["query"])
            assert found, f"unexpected dashboard variable query {query['query']}"
            exprs.append(found.group(1))
    return exprs


def used_metric_names() -> dict[str, set[str]]:
    """Every metric name the alert rules and the dashboard use -> where (`alert X`,
    `dashboard`)."""
    used: dict[str, set[str]] = {}
    for alert, expr in rule_exprs().items():
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add(f"alert {alert}")
    for expr in _dashboard_exprs():
        for name in promql_metric_names(expr):
            used.setdefault(name, set()).add("dashboard")
    return used
