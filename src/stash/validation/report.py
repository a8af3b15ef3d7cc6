"""What validation produces, violations (refuse) and warnings (allow, but say so), and
what it is given: `ValidationFacts`, the facts from outside the object some rules need.

Not for: the rules themselves (`checks`, `kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stash.api import Repository

__all__ = ["Report", "ValidationFacts", "Verdict", "Violation"]


@dataclass(frozen=True)
class Violation:
    """One reason an object is refused: the field (dotted path) and what to do about it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True)
class Verdict:
    """The outcome of validating one object."""

    violations: tuple[Violation, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (warnings do not count)."""
        return not self.violations

    @property
    def message(self) -> str:
        """Every violation on one line, for an admission response or a condition."""
        return "; ".join(str(v) for v in self.violations)


@dataclass(frozen=True)
class ValidationFacts:
    """Facts from outside the object that some rules need; unknown facts skip the rule."""

    repository: Repository | None = None
    """The invoker's Repository (local-backend mount path, a hostPath under Pod Security)."""
    namespace_labels: Mapping[str, str] | None = None
    """Labels of the invoker's namespace (its Pod Security level)."""


@dataclass
class Report:
    """Collects violations and warnings while the rules run."""

    violations: list[Violation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        """Record a violation at `path`."""
        self.violations.append(Violation(path, message))

    def warn(self, message: str) -> None:
        """Record a warning."""
        self.warnings.append(message)

    def verdict(self) -> Verdict:
        """What was found, frozen."""
        return Verdict(tuple(self.violations), tuple(self.warnings))
