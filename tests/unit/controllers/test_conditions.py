"""The condition rules BackupConfiguration and RestoreSession share: one answer each."""

from __future__ import annotations

from stash.api import Repository
from stash.contract import phases as P
from stash.controllers.conditions import (
    Check,
    InvokerFacts,
    RepositoryFacts,
    TargetFacts,
    apply_checks,
    repository_checks,
    target_check,
    usage_check,
)
from stash.kube.conditions import get_condition


def _by_type(checks: tuple[Check, ...]) -> dict[str, Check]:
    return {c.type: c for c in checks}


def test_a_repository_being_deleted_is_not_found_and_says_so() -> None:
    checks = _by_type(repository_checks(RepositoryFacts("demo/repo", "deleting")))
    found = checks[P.REPOSITORY_FOUND]
    assert (found.status, found.reason) == (False, "RepositoryNotAvailable")
    assert found.message == "Repository demo/repo is being deleted"
    secret = checks[P.BACKEND_SECRET_FOUND]
    assert (secret.status, secret.reason) == ("Unknown", "UnableToCheckBackendSecret")


def test_a_missing_or_unnamed_repository_is_not_found() -> None:
    missing = _by_type(repository_checks(RepositoryFacts("demo/repo", "missing")))
    assert missing[P.REPOSITORY_FOUND].message == "Repository demo/repo does not exist"
    unset = _by_type(repository_checks(RepositoryFacts("", "unset")))
    assert unset[P.REPOSITORY_FOUND].message == "spec.repository.name is not set"
    assert unset[P.BACKEND_SECRET_FOUND].status == "Unknown"


def test_the_storage_secret_is_checked_in_the_repository_namespace() -> None:
    gone = _by_type(repository_checks(RepositoryFacts("store/repo", "found", "s3", False)))
    assert gone[P.REPOSITORY_FOUND].status is True
    assert gone[P.BACKEND_SECRET_FOUND].status is False
    assert gone[P.BACKEND_SECRET_FOUND].message == (
        "Secret store/s3 (storage secret of Repository store/repo) not found"
    )
    there = _by_type(repository_checks(RepositoryFacts("store/repo", "found", "s3", True)))
    assert there[P.BACKEND_SECRET_FOUND] == Check(
        P.BACKEND_SECRET_FOUND, True, "BackendSecretAvailable", "Secret store/s3 found"
    )
    unnamed = _by_type(repository_checks(RepositoryFacts("store/repo", "found")))
    assert unnamed[P.BACKEND_SECRET_FOUND].message == (
        "Repository store/repo has no spec.backend.storageSecretName"
    )


def test_target_found_missing_or_unknown() -> None:
    found = target_check(P.BACKUP_TARGET_FOUND, TargetFacts("Deployment", "demo", "app", True))
    assert (found.status, found.message) == (True, "Deployment demo/app found")
    missing = target_check(P.RESTORE_TARGET_FOUND, TargetFacts("StatefulSet", "d", "db", False))
    assert (missing.type, missing.status, missing.reason) == (
        P.RESTORE_TARGET_FOUND,
        False,
        "TargetNotAvailable",
    )
    why = "target kind Pod is not one the operator can look up"
    unknown = target_check(P.BACKUP_TARGET_FOUND, TargetFacts("Pod", "d", "p", None, why))
    assert (unknown.status, unknown.reason, unknown.message) == (
        "Unknown",
        "UnableToCheckTargetAvailability",
        why,
    )


def test_validation_sees_the_repository_only_when_it_is_found() -> None:
    repo = Repository.model_validate({"metadata": {"name": "r", "namespace": "d"}})
    found = InvokerFacts(RepositoryFacts("d/r", "found", repository=repo), None, {"team": "a"})
    assert found.validation().repository is repo
    assert found.validation().namespace_labels == {"team": "a"}
    deleting = InvokerFacts(RepositoryFacts("d/r", "deleting"), None, None)
    assert deleting.validation().repository is None


def test_apply_checks_sets_each_condition_once_with_the_generation() -> None:
    checks = repository_checks(RepositoryFacts("d/r", "missing"))
    conds = apply_checks(None, checks, observed_generation=3)
    conds = apply_checks(conds, checks, observed_generation=3)
    assert [c.type for c in conds] == [P.REPOSITORY_FOUND, P.BACKEND_SECRET_FOUND]
    cond = get_condition(conds, P.REPOSITORY_FOUND)
    assert cond is not None and cond.status == "False" and cond.observed_generation == 3


def test_a_refusing_usage_policy_makes_the_invoker_not_ready_not_invalid() -> None:
    repo = Repository.model_validate(
        {
            "metadata": {"name": "repo", "namespace": "store"},
            "spec": {"backend": {"storageSecretName": "s3", "gcs": {"bucket": "b"}}},
        }
    )
    facts = InvokerFacts(RepositoryFacts("store/repo", "found", "s3", True, repo), None, {})
    refused = usage_check(facts, "team-a")
    assert refused is not None
    assert (refused.type, refused.status) == (P.REPOSITORY_USAGE_ALLOWED, False)
    assert 'does not allow use from namespace "team-a"' in refused.message
    conds = apply_checks(
        None,
        [
            *repository_checks(facts.repository),  # type: ignore[arg-type]
            refused,
            Check(P.VALIDATION_PASSED, True, "ResourceValidationPassed", ""),
            Check(P.SCHEDULE_REGISTERED, True, "ScheduleRegistrationSucceeded", ""),
        ],
    )
    assert P.backup_invoker_phase(conds, None) == "NotReady"
    same = usage_check(facts, "store")
    assert same is not None and same.status is True
    assert usage_check(InvokerFacts(RepositoryFacts("s/r", "missing"), None, {}), "x") is None
