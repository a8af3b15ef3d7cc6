"""The chart's alert rules under real promtool: they load (`promtool check rules`) and
each alert fires when it should and stays quiet when it should not (`promtool test
rules` with tests/integration/chart/alerts_test.yaml)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart_tools import render

TESTS = Path(__file__).with_name("alerts_test.yaml")


@pytest.fixture
def rule_file(helm_bin: str, tmp_path: Path) -> Path:
    """The rendered PrometheusRule's spec (release stash in namespace stash) as a file."""
    r = render("monitoring.prometheusRule.enabled=true", api_versions=["monitoring.coreos.com/v1"])
    path = tmp_path / "stash-rules.yaml"
    path.write_text(yaml.safe_dump(r.one("PrometheusRule")["spec"]))
    return path


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def test_rules_load(rule_file: Path, promtool_bin: str) -> None:
    done = _promtool(promtool_bin, "check", "rules", str(rule_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_fires_and_stays_quiet_as_tested(
    rule_file: Path, promtool_bin: str, tmp_path: Path
) -> None:
    tests = tmp_path / "alerts_test.yaml"
    tests.write_text(TESTS.read_text().replace("RULE_FILE", str(rule_file)))
    done = _promtool(promtool_bin, "test", "rules", str(tests))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_case(rule_file: Path) -> None:
    groups: list[dict[str, Any]] = yaml.safe_load(rule_file.read_text())["groups"]
    alerts = {rule["alert"] for g in groups for rule in g["rules"]}
    cases = [
        case
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    fires = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alerts == fires, f"alerts without a firing test: {alerts - fires}"
    assert alerts == quiet, f"alerts without a quiet test: {alerts - quiet}"
