"""Executor liveness rules: heartbeats judged by what the operator saw change (its own
clock only), Jobs by their conditions and pods."""

from __future__ import annotations

import json
from typing import Any

from stash.controllers.jobs import job_conflict
from stash.controllers.liveness import ChangeClock, job_host, job_problem, silent_hosts

JSON = dict[str, Any]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lease(host: str, renew: str, uid: str = "u1") -> JSON:
    return {
        "metadata": {
            "name": f"stash-hb-s-{host}",
            "uid": uid,
            "labels": {"stash.appscode.com/hostname": host[:63]},
            "annotations": {"stash.appscode.com/hostname": host},
        },
        "spec": {"holderIdentity": "pod-1", "renewTime": renew},
    }


def test_a_heartbeat_from_a_node_whose_clock_is_hours_behind_is_alive_while_it_changes() -> None:
    clock = FakeClock()
    seen = ChangeClock(clock)
    for i in range(10):
        # the agent's node says 2001: a clock comparison would call it dead at once
        beat = [lease("host-0", f"2001-01-01T00:00:{i:02d}.000000Z")]
        assert silent_hosts(beat, set(), seen, "s", timeout=60) == []
        clock.now += 30


def test_a_heartbeat_from_a_node_whose_clock_is_ahead_dies_when_it_stops_changing() -> None:
    clock = FakeClock()
    seen = ChangeClock(clock)
    beat = [lease("host-0", "2999-01-01T00:00:00.000000Z")]  # "renewed" in the future
    assert silent_hosts(beat, set(), seen, "s", timeout=60) == []
    clock.now += 59
    assert silent_hosts(beat, set(), seen, "s", timeout=60) == []
    clock.now += 1
    ((host, error),) = silent_hosts(beat, set(), seen, "s", timeout=60)
    assert host == "host-0"
    assert "pod-1 stopped renewing its heartbeat" in error


def test_a_reported_host_is_never_failed_and_a_long_host_name_comes_from_the_annotation() -> None:
    clock = FakeClock()
    seen = ChangeClock(clock)
    long_host = "node-" + "x" * 80
    beats = [lease("host-0", "t", uid="a"), lease(long_host, "t", uid="b")]
    silent_hosts(beats, {"host-0"}, seen, "s", timeout=5)
    clock.now += 5
    assert [h for h, _ in silent_hosts(beats, {"host-0"}, seen, "s", timeout=5)] == [long_host]


def test_the_change_clock_forgets_a_session_and_objects_that_are_gone() -> None:
    clock = FakeClock()
    seen = ChangeClock(clock)
    seen.unchanged_for("s", "a", 1)
    seen.unchanged_for("s", "b", 1)
    clock.now += 10
    seen.keep_only("s", ["a"])
    assert seen.unchanged_for("s", "a", 1) == 10
    assert seen.unchanged_for("s", "b", 1) == 0  # new again
    seen.forget("s")
    assert seen.unchanged_for("s", "a", 1) == 0


# ------------------------------------------------------------------ Jobs


def job(**status: Any) -> JSON:
    return {
        "metadata": {
            "name": "stash-backup-s-0",
            "annotations": {"stash.appscode.com/hostname": "db-0"},
        },
        "status": status,
    }


def pod(phase: str = "Pending", **status: Any) -> JSON:
    return {"metadata": {"name": "stash-backup-s-0-x1"}, "status": {"phase": phase, **status}}


def test_a_failed_job_is_final_with_the_job_and_container_reasons() -> None:
    failed = job(
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
        ]
    )
    crashed = pod(
        "Failed",
        initContainerStatuses=[
            {
                "name": "pvc-backup-0",
                "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "no repo"}},
            }
        ],
    )
    problem = job_problem(failed, [crashed], None)
    assert problem is not None and problem.final
    assert "BackoffLimitExceeded" in problem.message
    assert "container pvc-backup-0: Error (exit 3): no repo" in problem.message
    assert job_host(failed) == "db-0"


def test_a_pod_that_cannot_be_created_scheduled_or_pulled_is_a_start_problem() -> None:
    refused = job_problem(job(), [], 'pods "x" is forbidden: exceeded quota: q')
    assert refused is not None and not refused.final
    assert "exceeded quota" in refused.message
    unschedulable = pod(
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available",
            }
        ]
    )
    problem = job_problem(job(), [unschedulable], None)
    assert problem is not None and not problem.final
    assert "cannot be scheduled: 0/2 nodes are available" in problem.message
    pulling = pod(
        containerStatuses=[
            {
                "name": "update-status-1",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
            }
        ]
    )
    problem = job_problem(job(), [pulling], None)
    assert problem is not None and "ImagePullBackOff: not found" in problem.message


def test_a_pod_on_its_way_or_running_is_no_problem() -> None:
    creating = pod(containerStatuses=[{"name": "c", "state": {"waiting": {"reason": "X"}}}])
    assert job_problem(job(), [creating], None) is None
    assert job_problem(job(), [pod("Running")], None) is None
    assert job_problem(job(), [], None) is None  # the Job controller has not got to it yet


def test_a_job_that_completed_without_reporting_is_final() -> None:
    done = job(conditions=[{"type": "Complete", "status": "True"}])
    problem = job_problem(done, [pod("Succeeded")], None)
    assert problem is not None and problem.final


def test_an_existing_job_of_the_same_name_is_success_only_when_the_session_controls_it() -> None:
    owner = {"kind": "BackupSession", "name": "s", "uid": "u-1", "controller": True}
    ours = {"metadata": {"name": "j", "namespace": "n", "ownerReferences": [owner]}}
    assert job_conflict(ours, owner) is None
    other = {**owner, "name": "other-s", "uid": "u-2"}
    theirs = {"metadata": {"name": "j", "namespace": "n", "ownerReferences": [other]}}
    message = job_conflict(theirs, owner)
    assert message is not None
    assert "n/j already exists and belongs to BackupSession other-s" in message
    bare = {"metadata": {"name": "j", "namespace": "n"}}
    assert "nothing (no owner)" in str(job_conflict(bare, owner))


def test_a_dead_executor_s_recorded_snapshots_are_named_in_the_host_error() -> None:
    clock = FakeClock()
    seen = ChangeClock(clock)
    beat = lease("host-0", "2026-01-01T00:00:00.000000Z")
    written = [{"name": "0c40d02d", "path": "/data"}]
    beat["metadata"]["annotations"]["stash.appscode.com/snapshots"] = json.dumps(written)
    assert silent_hosts([beat], set(), seen, "s", timeout=5) == []
    clock.now += 5
    ((_, error),) = silent_hosts([beat], set(), seen, "s", timeout=5)
    assert "it had written snapshot 0c40d02d (/data), left in the repository" in error
