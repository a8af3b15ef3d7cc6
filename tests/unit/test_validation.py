"""Validation rules: what a user is told when a Stash object is wrong."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stash.api import Repository
from stash.validation import ValidationFacts, Verdict, parse_duration, schedule_problem, validate
from tests.unit.api_fixtures import fixture_docs


def bc(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schedule": "*/5 * * * *",
        "repository": {"name": "repo"},
        "retentionPolicy": {"name": "keep", "keepLast": 5, "prune": True},
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "paths": ["/data"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
    }
    body.update(spec)
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "bc", "namespace": "demo"},
        "spec": body,
    }


def rs(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "repository": {"name": "repo"},
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        },
    }
    body.update(spec)
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "RestoreSession",
        "metadata": {"name": "rs", "namespace": "demo"},
        "spec": body,
    }


def repo(backend: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo", "namespace": "demo"},
        "spec": {"backend": {"storageSecretName": "secret", **backend}, **spec},
    }


def fields(verdict: Verdict) -> list[str]:
    return [v.field for v in verdict.violations]


@pytest.mark.parametrize(("name", "doc"), fixture_docs(), ids=[n for n, _ in fixture_docs()])
def test_spec_fixtures_are_accepted(name: str, doc: dict[str, Any]) -> None:
    verdict = validate(doc)
    if name.startswith("everything-restoresession"):
        # sets both spec.rules and spec.target.rules: the user must keep only one
        assert fields(verdict) == ["spec.rules"]
        return
    hooks = [f for f in fields(verdict) if f.endswith("hooks")]
    if doc.get("kind") == "RestoreBatch" and hooks:
        # a RestoreBatch's global hooks are refused until they run (stash.contract.batches)
        assert fields(verdict) == ["spec.hooks"], verdict.message
        assert "global hooks are not run for a RestoreBatch" in verdict.message
        return
    assert verdict.ok, verdict.message


def test_valid_backup_configuration_passes_without_warnings() -> None:
    verdict = validate(bc())
    assert verdict.ok and verdict.warnings == ()


@pytest.mark.parametrize(
    "schedule", ["*/5 * * * *", "@daily", "0 0 1 * MON", "CRON_TZ=UTC 0 3 * * *"]
)
def test_valid_schedules_pass(schedule: str) -> None:
    assert schedule_problem(schedule) is None
    assert validate(bc(schedule=schedule)).ok


@pytest.mark.parametrize(
    "schedule",
    [
        "*/5 * * *",
        "61 * * * *",
        "0 0 * * 7",
        "@fortnightly",
        "x y z a b",
        "@every 1ns",
        "@every 59s",
    ],
)
def test_bad_schedule_is_refused_with_the_schedule_named(schedule: str) -> None:
    verdict = validate(bc(schedule=schedule))
    assert fields(verdict) == ["spec.schedule"]
    assert "invalid cron schedule" in verdict.message
    assert f'"{schedule}"' in verdict.message


def test_negative_keep_is_refused_and_an_empty_policy_is_warned_about() -> None:
    verdict = validate(bc(retentionPolicy={"name": "k", "keepLast": -1, "keepDaily": 3}))
    assert fields(verdict) == ["spec.retentionPolicy.keepLast"]
    assert "must not be negative, got -1" in verdict.message

    verdict = validate(bc(retentionPolicy={"name": "everything", "prune": False}))
    assert verdict.ok
    assert any("every snapshot is kept" in w for w in verdict.warnings)


def test_schema_type_errors_name_the_field() -> None:
    verdict = validate(bc(retentionPolicy={"name": "k", "keepLast": "five"}))
    assert fields(verdict) == ["spec.retentionPolicy.keepLast"]


def test_workload_target_needs_paths_and_mounts_and_may_not_use_the_scratch_dir() -> None:
    verdict = validate(
        bc(
            target={
                "ref": {"kind": "Deployment", "name": "web"},
                "volumeMounts": [
                    {"name": "a", "mountPath": "/stash-tmp/x"},
                    {"name": "b", "mountPath": "data"},
                ],
            }
        )
    )
    assert set(fields(verdict)) == {
        "spec.target.paths",
        "spec.target.volumeMounts[0].mountPath",
        "spec.target.volumeMounts[1].mountPath",
    }


def test_cross_namespace_targets_follow_the_model() -> None:
    sidecar = bc()
    sidecar["spec"]["target"]["ref"]["namespace"] = "other"
    verdict = validate(sidecar)
    assert fields(verdict) == ["spec.target.ref.namespace"]
    assert 'invoker\'s namespace "demo"' in verdict.message

    pvc = bc(
        target={"ref": {"kind": "PersistentVolumeClaim", "name": "d", "namespace": "x"}},
        task={"name": "pvc-backup"},
    )
    assert fields(validate(pvc)) == ["spec.target.ref.namespace"]

    app = bc(
        task={"name": "postgres-backup-16"},
        target={
            "ref": {
                "apiVersion": "appcatalog.appscode.com/v1alpha1",
                "kind": "AppBinding",
                "name": "pg",
                "namespace": "db",
            }
        },
    )
    assert validate(app).ok


def test_target_cannot_change_while_ready() -> None:
    old = bc()
    old["status"] = {"phase": "Ready"}
    new = copy.deepcopy(old)
    new["spec"]["target"]["paths"] = ["/data", "/more"]
    new["spec"]["target"]["volumeMounts"].append({"name": "more", "mountPath": "/more"})
    verdict = validate(new, old)
    assert fields(verdict) == ["spec.target"]
    # other fields may change; and the target may change while not Ready
    scheduled = copy.deepcopy(old)
    scheduled["spec"]["schedule"] = "@hourly"
    assert validate(scheduled, old).ok
    old["status"]["phase"] = "NotReady"
    assert validate(new, old).ok


def test_the_usage_policy_is_not_a_validation_rule() -> None:
    # The webhook refuses with stash.contract.usage; reconcilers report NotReady.
    shared = Repository.model_validate(
        repo({"s3": {"endpoint": "s3.amazonaws.com", "bucket": "b"}})
        | {"metadata": {"name": "repo", "namespace": "backups"}}
    )
    obj = bc(repository={"name": "repo", "namespace": "backups"})
    assert validate(obj, facts=ValidationFacts(repository=shared)).ok


def test_durations_and_counters() -> None:
    verdict = validate(
        bc(
            timeOut="ten minutes",
            backupHistoryLimit=-1,
            retryConfig={"maxRetry": -2, "delay": "5m"},
        )
    )
    assert set(fields(verdict)) == {
        "spec.timeOut",
        "spec.backupHistoryLimit",
        "spec.retryConfig.maxRetry",
    }
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1.5s") == 1.5
    with pytest.raises(ValueError, match="Go duration"):
        parse_duration("5 minutes")


def test_durations_too_long_for_date_arithmetic_are_refused() -> None:
    # "100000000h" used to raise OverflowError in the session reconciler and wedge it
    verdict = validate(bc(timeOut="100000000h", retryConfig={"maxRetry": 1, "delay": "9999999h"}))
    assert set(fields(verdict)) == {"spec.timeOut", "spec.retryConfig.delay"}
    assert "too long" in verdict.message
    assert parse_duration("2562047h") == 2562047 * 3600


def test_every_of_a_minute_or_more_is_accepted() -> None:
    assert validate(bc(schedule="@every 1m")).ok
    assert "at least 1m" in (schedule_problem("@every 30s") or "")


def test_hooks_need_exactly_one_action() -> None:
    verdict = validate(bc(hooks={"preBackup": {"containerName": "app"}}))
    assert fields(verdict) == ["spec.hooks.preBackup"]


# ------------------------------------------------------------------ RestoreSession rules


def test_two_catch_all_rules_are_refused() -> None:
    obj = rs()
    obj["spec"]["target"]["rules"] = [{"paths": ["/data"]}, {"snapshots": ["latest"]}]
    verdict = validate(obj)
    assert fields(verdict) == ["spec.target.rules[1].targetHosts"]
    assert "only one rule may leave targetHosts empty" in verdict.message


def test_a_host_may_be_in_only_one_rule_and_snapshots_exclude_paths() -> None:
    obj = rs()
    obj["spec"]["target"]["rules"] = [
        {"targetHosts": ["host-0", "host-1"], "paths": ["/data"]},
        {"targetHosts": ["host-1"], "snapshots": ["abc"], "paths": ["/x"]},
    ]
    verdict = validate(obj)
    assert set(fields(verdict)) == {"spec.target.rules[1]", "spec.target.rules[1].targetHosts"}
    assert 'host "host-1" is already in spec.target.rules[0]' in verdict.message


def test_deprecated_rules_are_checked_and_may_not_be_doubled() -> None:
    obj = rs(rules=[{"paths": ["/a"]}, {"paths": ["/b"]}])
    assert fields(validate(obj)) == ["spec.rules[1].targetHosts"]
    obj = rs(rules=[{"paths": ["/a"]}])
    obj["spec"]["target"]["rules"] = [{"paths": ["/b"]}]
    assert fields(validate(obj)) == ["spec.rules"]


def test_restore_into_new_pvcs_needs_no_ref() -> None:
    obj = rs(
        target={"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]},
        task={"name": "pvc-restore"},
    )
    assert validate(obj).ok


# ------------------------------------------------------------------ Repository


def test_wipe_out_is_refused_for_local_and_b2() -> None:
    local = repo({"local": {"mountPath": "/safe", "hostPath": {"path": "/srv"}}}, wipeOut=True)
    verdict = validate(local)
    assert fields(verdict) == ["spec.wipeOut"]
    assert "not supported for the local backend" in verdict.message
    assert fields(validate(repo({"b2": {"bucket": "b"}}, wipeOut=True))) == ["spec.wipeOut"]
    s3 = {"endpoint": "e", "bucket": "b", "prefix": "team/repo"}
    assert validate(repo({"s3": s3}, wipeOut=True)).ok


@pytest.mark.parametrize(
    ("backend", "field"),
    [
        ({"s3": {"endpoint": "e", "bucket": "b"}}, "spec.backend.s3.prefix"),
        ({"s3": {"endpoint": "e", "bucket": "b", "prefix": "/"}}, "spec.backend.s3.prefix"),
        ({"gcs": {"bucket": "b", "prefix": "//"}}, "spec.backend.gcs.prefix"),
        ({"azure": {"container": "c"}}, "spec.backend.azure.prefix"),
        ({"swift": {"container": "c", "prefix": ""}}, "spec.backend.swift.prefix"),
        ({"rest": {"url": "https://rest.example:8000/"}}, "spec.backend.rest.url"),
    ],
)
def test_wipe_out_without_a_prefix_is_refused(backend: dict[str, Any], field: str) -> None:
    # it deleted the whole bucket, other repositories included
    verdict = validate(repo(backend, wipeOut=True))
    assert fields(verdict) == [field]
    assert "whole" in verdict.message
    assert validate(repo(backend)).ok  # without wipeOut nothing is deleted


@pytest.mark.parametrize(
    "mount_path", ["/stash", "/stash/", "/stash/data", "/stash-tmp", "relative"]
)
def test_local_mount_path_may_not_clash_with_stash(mount_path: str) -> None:
    verdict = validate(repo({"local": {"mountPath": mount_path, "hostPath": {"path": "/srv"}}}))
    assert fields(verdict) == ["spec.backend.local.mountPath"]


def test_local_mount_path_next_to_stash_is_fine() -> None:
    assert validate(repo({"local": {"mountPath": "/stashed", "hostPath": {"path": "/srv"}}})).ok


def test_exactly_one_backend_with_its_required_fields() -> None:
    assert fields(validate(repo({}))) == ["spec.backend"]
    two = validate(repo({"s3": {"endpoint": "e", "bucket": "b"}, "gcs": {"bucket": "b"}}))
    assert "found s3 and gcs" in two.message
    missing_bucket = validate(repo({"s3": {"endpoint": "e"}}))
    assert fields(missing_bucket) == ["spec.backend.s3.bucket"]
    no_source = validate(repo({"local": {"mountPath": "/safe"}}))
    assert fields(no_source) == ["spec.backend.local"]
    no_secret = repo({"gcs": {"bucket": "b"}})
    del no_secret["spec"]["backend"]["storageSecretName"]
    assert fields(validate(no_secret)) == ["spec.backend.storageSecretName"]


# ------------------------------------------------------------------ BackupSession


def test_backup_session_spec_is_immutable() -> None:
    old = {
        "kind": "BackupSession",
        "metadata": {"name": "s", "namespace": "demo"},
        "spec": {
            "invoker": {
                "apiGroup": "stash.appscode.com",
                "kind": "BackupConfiguration",
                "name": "bc",
            }
        },
    }
    assert validate(old).ok
    relabelled = copy.deepcopy(old) | {"metadata": {"name": "s", "labels": {"x": "y"}}}
    assert validate(relabelled, old).ok
    changed = copy.deepcopy(old)
    changed["spec"]["invoker"]["name"] = "other"
    verdict = validate(changed, old)
    assert fields(verdict) == ["spec"] and "immutable" in verdict.message


def test_backup_session_invoker_kind_must_be_a_backup_invoker() -> None:
    obj = {"kind": "BackupSession", "spec": {"invoker": {"kind": "RestoreSession", "name": "x"}}}
    assert fields(validate(obj)) == ["spec.invoker.kind"]


def test_unknown_kinds_pass() -> None:
    assert validate({"kind": "ConfigMap", "data": {}}).ok


def test_restic_args_that_would_run_commands_or_read_agent_files_are_refused() -> None:
    target = {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "paths": ["/data"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "args": ["--password-command", "cat /var/run/secrets/kubernetes.io/serviceaccount/token"],
    }
    verdict = validate(bc(target=target))
    assert fields(verdict) == ["spec.target.args"]
    assert '"--password-command" is not allowed' in verdict.message


# ------------------------------------------------------------------ Pod Security


def _level(level: str) -> ValidationFacts:
    return ValidationFacts(namespace_labels={"pod-security.kubernetes.io/enforce": level})


def test_what_baseline_forbids_is_refused_with_the_field() -> None:
    obj = bc(
        runtimeSettings={
            "container": {
                "securityContext": {
                    "capabilities": {"add": ["CHOWN", "CAP_SYS_ADMIN"]},
                    "procMount": "Unmasked",
                    "seccompProfile": {"type": "Unconfined"},
                }
            },
            "pod": {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
        }
    )
    verdict = validate(obj, facts=_level("baseline"))
    prefix = "spec.runtimeSettings."
    assert set(fields(verdict)) == {
        prefix + "container.securityContext.capabilities.add",
        prefix + "container.securityContext.procMount",
        prefix + "container.securityContext.seccompProfile.type",
        prefix + "pod.securityContext.sysctls[0]",
    }
    assert "CAP_SYS_ADMIN may not be added" in verdict.message
    assert "CHOWN" not in verdict.message.split("may not be added")[0].split(":")[-1]
    assert validate(obj, facts=_level("privileged")).ok
    assert validate(obj).ok  # no label: the cluster default is not known here


def test_restricted_also_refuses_root_and_escalation() -> None:
    obj = bc(
        runtimeSettings={
            "container": {
                "securityContext": {
                    "allowPrivilegeEscalation": True,
                    "capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]},
                }
            },
            "pod": {"securityContext": {"runAsNonRoot": False}},
        }
    )
    assert validate(obj, facts=_level("baseline")).ok
    verdict = validate(obj, facts=_level("restricted"))
    assert set(fields(verdict)) == {
        "spec.runtimeSettings.container.securityContext.allowPrivilegeEscalation",
        "spec.runtimeSettings.container.securityContext.capabilities.add",
        "spec.runtimeSettings.pod.securityContext.runAsNonRoot",
    }


def test_a_host_path_repository_is_refused_where_pod_security_forbids_host_paths() -> None:
    local = Repository.model_validate(
        repo({"local": {"mountPath": "/safe", "hostPath": {"path": "/srv"}}})
    )
    facts = ValidationFacts(local, {"pod-security.kubernetes.io/enforce": "baseline"})
    verdict = validate(bc(), facts=facts)
    assert fields(verdict) == ["spec.repository"]
    assert "hostPath" in verdict.message
