"""The chaos report: runs, injections per fault, session outcomes, violations.

Printed at the end of a chaos test and written as JSON (the path is printed), so a
failing run can be replayed with its seed. Not for: deciding what is a violation.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Report:
    """What a chaos test did and found."""

    seed: int
    planned: int
    runs: int = 0
    injections: Counter[str] = field(default_factory=Counter)
    misses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    follow_ups: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    webhook: dict[str, int] = field(default_factory=dict)
    operator_kill_rounds: int = 0
    orphans: int = 0
    """Snapshots no session reports after a fault of an open bug (counted, not failed on
    unless STASH_CHAOS_STRICT)."""
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_injections(self) -> int:
        """Faults that hit something."""
        return sum(self.injections.values())

    def as_json(self) -> dict[str, Any]:
        """The report as plain data."""
        return {
            "seed": self.seed,
            "planned_injections": self.planned,
            "runs": self.runs,
            "injections": self.total_injections,
            "injections_by_fault": dict(self.injections),
            "misses_by_fault": dict(self.misses),
            "session_outcomes": dict(self.outcomes),
            "follow_up_sessions": dict(self.follow_ups),
            "violations": self.violations,
            "notes": self.notes,
            "webhook_probes": self.webhook,
            "operator_kill_rounds": self.operator_kill_rounds,
            "orphan_snapshots_of_open_bugs": self.orphans,
            "runs_log": self.log,
        }

    def write(self, path: Path) -> None:
        """Write the JSON report."""
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n")

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"chaos seed={self.seed} (replay: STASH_CHAOS_SEED={self.seed}) runs={self.runs} "
            f"injections={self.total_injections}",
            f"  by fault: {dict(sorted(self.injections.items()))}",
            f"  missed (nothing to hit): {dict(sorted(self.misses.items()))}",
            f"  faulted sessions: {dict(sorted(self.outcomes.items()))}",
            f"  follow-up sessions: {dict(sorted(self.follow_ups.items()))}",
            f"  webhook probes: {self.webhook} over {self.operator_kill_rounds} "
            "operator kill rounds",
            f"  orphan snapshots of open bugs (KNOWN_ORPHAN_FAULTS): {self.orphans}",
            f"  violations: {len(self.violations)}",
        ]
        lines += [f"    - {v}" for v in self.violations[:30]]
        lines += [f"  note: {n}" for n in self.notes[:20]]
        return "\n".join(lines)
