"""The Helm chart's static parts agree with the code (no helm, no cluster).

The chart's CRDs, agent ClusterRoles and webhook configurations are generated from the
code (charts/generate.py); its values schema rejects wrong values; every metric its alert
rules and dashboard name is one the operator or the agent exports; the image recipe
builds the restic the tests pin. Rendering with helm is tested in
tests/integration/chart/.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from stash import __version__
from stash import metrics as operator_metrics
from stash.cli.main import main as stash_main
from stash.sessionmetrics import FAMILIES
from stash.settings import OperatorSettings
from stash.webhook.registration import configurations
from tests.support.chart_metrics import (
    APISERVER_METRICS,
    promql_metric_names,
    rule_exprs,
    used_metric_names,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stash"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_generate", ROOT / "charts" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_chart_files_are_current() -> None:
    stale = _generator().stale_files()
    assert not stale, f"stale chart files (run `make manifests`): {[str(p) for p in stale]}"


def test_chart_crds_are_what_stash_crds_writes(tmp_path: Path) -> None:
    assert stash_main(["crds", "--out-dir", str(tmp_path)]) == 0
    expected = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert chart == expected, "charts/stash/crds differs from `stash crds`: run `make manifests`"


def test_chart_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == __version__


# ---------------------------------------------------------------- values schema


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def _values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def test_default_values_meet_the_schema() -> None:
    jsonschema.Draft7Validator(_schema()).validate(_values())


BAD_VALUES = [
    ({"replicaCount": "two"}, "'two' is not of type 'integer'"),
    ({"logFormat": "xml"}, "'xml' is not one of ['json', 'text']"),
    ({"webhook": {"mutating": {"failurePolicy": "Sometimes"}}}, "'Sometimes' is not one of"),
    ({"webhook": {"certificates": {"mode": "secret"}}}, "'' should be non-empty"),
    ({"leaderElection": {"enabled": False}}, "2 is greater than the maximum of 1"),
    ({"replicaCounts": 3}, "Additional properties are not allowed ('replicaCounts'"),
    ({"pushgateway": {"url": "pushgateway:9091"}}, "does not match"),
]


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(base[key], value) if isinstance(value, dict) and key in base else value
    return out


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[m for _, m in BAD_VALUES])
def test_schema_refuses_a_wrong_value(override: dict[str, Any], message: str) -> None:
    errors = list(jsonschema.Draft7Validator(_schema()).iter_errors(_merged(_values(), override)))
    assert any(message in e.message for e in errors), [e.message for e in errors]


# ---------------------------------------------------------------- metric names


def test_promql_names_are_found() -> None:
    expr = (
        'sum by (le, controller) (rate(x_bucket{job=~"$job"}[$__rate_interval])) '
        "/ on (a) y_total offset 5m > {{ .Values.z }}"
    )
    assert promql_metric_names(expr) == {"x_bucket", "y_total"}


def _family_samples(kind: str, name: str) -> set[str]:
    return {
        "counter": {f"{name}_total", f"{name}_created"},
        "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"},
        "summary": {name, f"{name}_sum", f"{name}_count", f"{name}_created"},
    }.get(kind, {name})


def exported_metric_names() -> set[str]:
    """Every sample name the operator's families and the session metrics produce."""
    names: set[str] = set()
    for value in vars(operator_metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names |= _family_samples(family.type, family.name)
    # The session metrics: all gauges, one sample name each (stash.sessionmetrics).
    names |= {n for families in FAMILIES.values() for f in families for n in f.names}
    return names


def test_every_metric_in_rules_and_dashboard_is_exported() -> None:
    exported = exported_metric_names()
    used = used_metric_names()
    assert used, "no metric names found"
    unknown = {n: w for n, w in used.items() if n not in exported | APISERVER_METRICS}
    assert not unknown, f"metrics nobody exports: {unknown}"
    assert not {n for n in used if "watch_restarts" in n}, "watch_restarts is being renamed"


def test_rules_cover_what_users_are_alerted_about() -> None:
    doc = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert {r["alert"] for r in rules} >= {
        "StashBackupOverdue",
        "StashBackupFailed",
        "StashBackupSessionFailed",
        "StashRepositoryIntegrityFailure",
        "StashOperatorDown",
        "StashOperatorNoLeader",
        "StashWebhookErrors",
    }


def test_webhook_alert_matches_every_webhook_the_code_registers() -> None:
    expr = rule_exprs()["StashWebhookErrors"]
    patterns = set(re.findall(r'name=~"([^"]+)"', expr))
    assert patterns
    mutating, validating = configurations(OperatorSettings())
    assert mutating is not None and validating is not None
    for hook in mutating["webhooks"] + validating["webhooks"]:
        for pattern in patterns:
            assert re.fullmatch(pattern.replace("\\\\", "\\"), hook["name"]), hook["name"]


# ---------------------------------------------------------------- image recipe


def test_image_builds_the_restic_the_tests_pin() -> None:
    build = (ROOT / "tests" / "tools" / "build.sh").read_text()
    pinned = re.search(r"^RESTIC_VERSION=(\S+)$", build, re.MULTILINE)
    dockerfile = (ROOT / "Dockerfile").read_text()
    in_image = re.search(r"^ARG RESTIC_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert pinned and in_image and in_image.group(1) == pinned.group(1)
    assert re.search(r"^USER 65532:65532$", dockerfile, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["stash"\]$', dockerfile, re.MULTILINE)
    values = _values()
    assert values["podSecurityContext"]["runAsUser"] == 65532
