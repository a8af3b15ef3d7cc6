"""BackupBatch / RestoreBatch rules (stash-api.md §1.6): members as the invokers they
stand for, host naming, execution order, target initiation, member and batch phases,
the agent's member lookup and status writes, and refusing hooks."""

from __future__ import annotations

from typing import Any

from stash.agent.restoretarget import RestoreInvoker
from stash.agent.stats import TargetKey
from stash.api import BackupBatch, RestoreBatch
from stash.api.backupsession import BackupTargetStatus, HostBackupStats
from stash.api.batch import RestoreBatchStatus, RestoreMemberStatus
from stash.api.common import TargetRef
from stash.api.restoresession import HostRestoreStats
from stash.contract import phases as P
from stash.contract.batches import (
    backup_members,
    may_start,
    member_index,
    restore_member_index,
    restore_members,
)
from stash.controllers.sessiontargets import merge_targets, pending_targets
from stash.inject import inject_backup, invoker_hash
from stash.kube.conditions import set_condition
from stash.settings import OperatorSettings
from stash.validation import validate

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
PVC = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}


def batch(order: str = "Sequential", **extra: Any) -> BackupBatch:
    return BackupBatch.model_validate(
        {
            "metadata": {"name": "wp", "namespace": "demo", "uid": "u-1"},
            "spec": {
                "schedule": "*/30 * * * *",
                "executionOrder": order,
                "repository": {"name": "wp-repo"},
                "retentionPolicy": {"name": "keep-5", "keepLast": 5, "prune": True},
                "backupHistoryLimit": 3,
                "members": [
                    {"task": {"name": "pvc-backup"}, "target": {"ref": PVC, "paths": ["/d"]}},
                    {
                        "target": {
                            "alias": "app",
                            "ref": DEPLOY,
                            "paths": ["/data"],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    },
                ],
                **extra,
            },
        }
    )


def test_members_are_backupconfigurations_of_kind_backupbatch() -> None:
    first, second = backup_members(batch())
    for m in (first, second):
        assert m.kind == "BackupBatch" and m.metadata.name == "wp" and m.metadata.uid == "u-1"
        assert m.spec is not None and m.spec.repository is not None
        assert m.spec.repository.name == "wp-repo"
        assert m.spec.retention_policy.keep_last == 5 and m.spec.backup_history_limit == 3
    assert first.spec and first.spec.task and first.spec.task.name == "pvc-backup"
    # no alias: the target's name is the restic host (one repository, distinct hosts)
    assert first.spec.target and first.spec.target.alias == "data"
    assert second.spec and second.spec.target and second.spec.target.alias == "app"


def test_a_member_sidecar_runs_for_the_batch() -> None:
    member = backup_members(batch())[1]
    workload = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "app"}],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                }
            }
        },
    }
    out = inject_backup(workload, member, OperatorSettings())
    (sidecar,) = [c for c in out["spec"]["template"]["spec"]["containers"] if c["name"] == "stash"]
    assert sidecar["args"][:3] == ["run-backup", "--invoker-name=wp", "--invoker-kind=BackupBatch"]
    assert invoker_hash(member)  # hashable like a BackupConfiguration


def test_member_lookup_by_target() -> None:
    members = backup_members(batch())
    assert member_index(members, "Deployment", "web", "demo") == 1
    assert member_index(members, "PersistentVolumeClaim", "data", "demo") == 0
    assert member_index(members, "Deployment", "web", "other") is None


def test_execution_order() -> None:
    assert may_start(False, [False, False]) == [True, True]
    assert may_start(True, [False, False, False]) == [True, False, False]
    assert may_start(True, [True, False, False]) == [True, True, False]
    assert may_start(True, [True, True, False]) == [True, True, True]


def _initiated(phase_hosts: str | None) -> BackupTargetStatus:
    t = BackupTargetStatus(ref=TargetRef(kind="PersistentVolumeClaim", name="data"), total_hosts=1)
    if phase_hosts:
        t.stats = [HostBackupStats(hostname="data", phase=phase_hosts)]  # type: ignore[arg-type]
    return t


def test_sequential_targets_start_one_after_another() -> None:
    assert pending_targets([], 2, True) == ([0], [1])
    running = [_initiated(None), BackupTargetStatus(ref=TargetRef(name="web"))]
    assert pending_targets(running, 2, True) == ([], [])
    failed = [_initiated("Failed"), BackupTargetStatus(ref=TargetRef(name="web"))]
    assert pending_targets(failed, 2, True) == ([1], [])  # a final member lets the next go
    assert pending_targets([], 2, False) == ([0, 1], [])


def test_merge_targets_never_replaces_an_initiated_entry() -> None:
    bare = BackupTargetStatus(ref=TargetRef(name="web"))
    live = [_initiated("Succeeded"), bare]
    new_entry = BackupTargetStatus(ref=TargetRef(name="web"), total_hosts=1)
    merged = merge_targets(live, [(0, BackupTargetStatus(total_hosts=9)), (1, new_entry)])
    assert merged[0].total_hosts == 1 and merged[1].total_hosts == 1
    assert merge_targets([], [(1, bare), (0, _initiated(None))])[1] is bare


def test_backup_batch_hooks_are_accepted_and_their_templates_checked() -> None:
    hooked = batch(hooks={"preBackup": {"httpGet": {"host": "h", "port": 80, "path": "/on"}}})
    assert validate({"kind": "BackupBatch", **hooked.to_wire()}).ok
    bad = {"port": 80, "body": "{{ .Status.Phase | nope }}"}
    verdict = validate(
        {"kind": "BackupBatch", **batch(hooks={"postBackup": {"httpPost": bad}}).to_wire()}
    )
    assert [v.field for v in verdict.violations] == ["spec.hooks.postBackup.httpPost.body"]
    assert 'line 1, column 20: function "nope" not defined' in verdict.message


def restore_batch() -> RestoreBatch:
    return RestoreBatch.model_validate(
        {
            "metadata": {"name": "rb", "namespace": "demo"},
            "spec": {
                "repository": {"name": "wp-repo"},
                "executionOrder": "Sequential",
                "members": [
                    {
                        "task": {"name": "pvc-restore"},
                        "target": {
                            "alias": "data",
                            "volumeMounts": [{"name": "r", "mountPath": "/d"}],
                            "volumeClaimTemplates": [
                                {"metadata": {"name": "restored-${POD_ORDINAL}"}}
                            ],
                            "rules": [{"paths": ["/d"]}],
                        },
                    },
                    {
                        "target": {
                            "ref": DEPLOY,
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            "rules": [{"paths": ["/data"]}],
                        }
                    },
                ],
            },
        }
    )


def test_restore_members_and_lookup() -> None:
    first, second = restore_members(restore_batch())
    assert first.kind == "RestoreBatch" and first.spec and first.spec.repository
    assert first.spec.repository.name == "wp-repo"
    assert second.spec and second.spec.target and second.spec.target.alias == "web"
    members = [first, second]
    assert restore_member_index(members, "Deployment", "web", "demo") == 1
    assert restore_member_index(members, "PersistentVolumeClaim", "restored-0", "demo") == 0
    assert restore_member_index(members, "", "restored-0", "demo") == 0
    assert restore_member_index(members, "Deployment", "restored-0", "demo") is None


def _member(total: int | None, *phases: str, ensured: bool = True) -> RestoreMemberStatus:
    conds = set_condition(None, P.RESTORE_EXECUTOR_ENSURED, ensured, "r", "m")
    return RestoreMemberStatus(
        ref=TargetRef(name="x"),
        total_hosts=total,
        conditions=conds,
        stats=[HostRestoreStats(hostname=f"h{i}", phase=p) for i, p in enumerate(phases)],  # type: ignore[arg-type]
    )


def test_restore_member_and_batch_phases() -> None:
    assert P.restore_member_phase(_member(None)) == "Pending"
    assert P.restore_member_phase(_member(2, "Succeeded")) == "Running"
    assert P.restore_member_phase(_member(2, "Succeeded", "Failed")) == "Failed"
    assert P.restore_member_phase(_member(1, "Unknown")) == "Unknown"
    assert P.restore_member_phase(_member(1, ensured=False)) == "Failed"
    pushed = set_condition(None, P.METRICS_PUSHED, True, "r", "m")
    done = RestoreBatchStatus(members=[_member(1, "Succeeded"), _member(1, "Succeeded")])
    assert P.restore_batch_completed(done)
    assert P.restore_batch_phase(done) == "Running"  # until the metrics push
    done.conditions = pushed
    assert P.restore_batch_phase(done) == "Succeeded"
    one_failed = RestoreBatchStatus(
        conditions=pushed, members=[_member(1, "Failed"), _member(1, "Succeeded")]
    )
    assert P.restore_batch_phase(one_failed) == "Failed"
    waiting = RestoreBatchStatus(members=[_member(1, "Succeeded"), _member(None)])
    assert not P.restore_batch_completed(waiting)
    assert P.restore_batch_phase(waiting) == "Running"
    assert P.restore_batch_phase(RestoreBatchStatus(members=[_member(None)])) == "Pending"


def test_restore_agent_reads_and_writes_its_member() -> None:
    live = restore_batch().to_wire()
    live["metadata"]["namespace"] = "demo"
    inv = RestoreInvoker("RestoreBatch", "rb", TargetKey("Deployment", "web", "demo"))
    assert inv.ready(live) is False
    live["status"] = {
        "members": [{"ref": {"name": "restored-0"}}, {"ref": DEPLOY, "totalHosts": 1}]
    }
    assert inv.ready(live) is True
    view = inv.view(live)
    assert not isinstance(view, str) and view.spec and view.spec.target
    assert view.spec.target.rules and view.spec.target.rules[0].paths == ["/data"]
    entry = HostRestoreStats(hostname="web", phase="Succeeded", duration="1s")
    written = inv.with_entry(live, entry)
    assert written is not None
    assert written["members"][1]["stats"] == [entry.to_wire()]
    assert written["members"][1]["phase"] == "Succeeded"
    assert "stats" not in written["members"][0]
    live["status"] = written
    assert inv.entry(live, "web") == entry
    stranger = RestoreInvoker("RestoreBatch", "rb", TargetKey("StatefulSet", "db", "demo"))
    assert stranger.ready(live) == "RestoreBatch rb has no member for StatefulSet demo/db"
