"""The objects an auto-backup plan would make, judged by the same rules as hand-written ones.

What it is for: `plan_problems(plan)`, so a blueprint that resolves into a Repository or
BackupConfiguration the validating webhook would refuse (a bad retention policy, a
backend without its bucket, a cross-namespace target of the sidecar model) is reported
on the annotated object before anything is created, by the webhook and the operator
alike; `checked_plan()` is `resolve()` followed by these checks, the one call both make.
Not for: resolving the plan (`stash.contract.blueprint`).
"""

from __future__ import annotations

from collections.abc import Mapping

from stash.api import BackupBlueprint, BackupConfiguration, Repository
from stash.contract.autobackup import ANN_BLUEPRINT, Problem, Target
from stash.contract.blueprint import Existing, Plan, resolve
from stash.validation.kinds import validate_backup_configuration, validate_repository

__all__ = ["checked_plan", "plan_problems"]


def plan_problems(plan: Plan) -> list[Problem]:
    """Every rule the planned objects break, each naming the blueprint it came from."""
    out: list[Problem] = []
    for planned in plan.backups:
        repo = Repository.model_validate(planned.repository)
        bc = BackupConfiguration.model_validate(planned.backup_configuration)
        for what, verdict in (
            (f"Repository {repo.metadata.name}", validate_repository(repo)),
            (f"BackupConfiguration {bc.metadata.name}", validate_backup_configuration(bc)),
        ):
            for v in verdict.violations:
                out.append(
                    Problem(
                        ANN_BLUEPRINT,
                        f"BackupBlueprint {planned.blueprint} makes {what} that would be "
                        f"refused: {v}",
                    )
                )
    return out


def checked_plan(
    target: Target, blueprints: Mapping[str, BackupBlueprint | None], existing: Existing
) -> Plan:
    """`resolve()`, then `plan_problems()`: a plan with problems makes nothing."""
    plan = resolve(target, blueprints, existing)
    found = plan_problems(plan)
    if found:
        return Plan(target, problems=(*plan.problems, *found))
    return plan
