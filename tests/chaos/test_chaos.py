"""Chaos: faults at random moments of real backups and restores, and what must still
hold (issue #11, "A chaos suite"). `make test` runs a few faulted runs; `make chaos`
runs at least 100 (STASH_CHAOS_INJECTIONS) and prints and writes the report."""

from __future__ import annotations

import pytest

from tests.chaos.conftest import SESSION_TIMEOUT, ChaosSetup, operator_rounds, planned_injections
from tests.chaos.engine import Chaos

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.serial,  # it restarts and kills the control plane's parts
    # the full form runs as long as its injections take (a run is a few sessions)
    pytest.mark.timeout(600 + 150 * planned_injections()),
]


async def test_faults_lose_nothing_and_leave_nothing_stuck(
    chaos: ChaosSetup, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    report = chaos.report
    path = tmp_path_factory.getbasetemp() / "chaos-report.json"
    with capsys.disabled():
        print(f"\nchaos report (rewritten after every run): {path}")
    engine = Chaos(chaos.cluster, chaos.worlds, report, SESSION_TIMEOUT)
    await engine.warm_up()
    chaos.probe.start()
    await engine.operator_rounds(operator_rounds())
    run = 0
    # A fault that found nothing to hit (the session was already over) is no injection:
    # runs go on until the planned number hit, within a bound.
    while report.total_injections - _rounds(report) < report.planned and run < 3 * report.planned:
        run += 1
        await engine.run(run)
        report.webhook = dict(chaos.probe.counts)
        report.write(path)
    await chaos.probe.stop()
    report.webhook = dict(chaos.probe.counts)
    report.violations += [f"webhook: {f}" for f in chaos.probe.failures]
    report.write(path)
    with capsys.disabled():
        print(f"\n{report.summary()}\nchaos report: {path}")
    assert not report.violations, f"{report.summary()}\nreport: {path}"
    assert report.total_injections - _rounds(report) >= report.planned, report.summary()
    assert report.webhook.get("admitted-mutated", 0) + report.webhook.get("repaired", 0) > 0


def _rounds(report: object) -> int:
    injections = getattr(report, "injections", {})
    return sum(v for k, v in injections.items() if k.startswith("operator-round"))
