"""Session names, labels, durations, history and host counts (§1.4, §5.2, §5.8)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from stash.contract.sessions import (
    LABEL_INVOKER_NAME,
    LABEL_TARGET_NAME,
    format_duration,
    heartbeat_labels,
    heartbeat_selector,
    history_to_delete,
    hosts_observed,
    invoker_selector,
    label_value,
    new_backup_session,
    session_name,
    total_hosts,
)


def test_session_name_is_the_fire_time_so_replays_are_idempotent() -> None:
    when = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert session_name("bc", when) == "bc-1767268800"
    assert (
        session_name("bc", when.astimezone(dt.timezone(dt.timedelta(hours=5)))) == "bc-1767268800"
    )


def test_new_session_has_labels_owner_and_retry_budget() -> None:
    invoker = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "bc", "namespace": "demo", "uid": "u1", "labels": {"team": "a"}},
        "spec": {
            "target": {"ref": {"kind": "StatefulSet", "name": "db"}},
            "retryConfig": {"maxRetry": 2},
        },
    }
    s = new_backup_session(invoker, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    labels = s["metadata"]["labels"]
    assert labels["team"] == "a"
    assert labels["stash.appscode.com/target-kind"] == "StatefulSet"
    assert labels["stash.appscode.com/target-namespace"] == "demo"
    assert labels["app.kubernetes.io/managed-by"] == "stash.appscode.com"
    assert s["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert s["spec"]["retryLeft"] == 2
    assert (
        new_backup_session(invoker, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 0)["spec"]["retryLeft"]
        == 0
    )


def test_durations_look_like_go() -> None:
    assert format_duration(12.3) == "12.3s"
    assert format_duration(63) == "1m3s"
    assert format_duration(7205) == "2h0m5s"


def _s(name: str, ts: str, phase: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": ts}, "status": {"phase": phase}}


def test_history_keeps_limit_and_never_deletes_running_ones() -> None:
    sessions = [
        _s("a", "2026-01-01T00:01:00Z", "Succeeded"),
        _s("b", "2026-01-01T00:02:00Z", "Failed"),
        _s("c", "2026-01-01T00:03:00Z", "Running"),
        _s("d", "2026-01-01T00:04:00Z", "Skipped"),
        _s("e", "2026-01-01T00:05:00Z", "Succeeded"),
    ]
    assert history_to_delete(sessions, 3) == ["b", "a"]
    assert history_to_delete(sessions, 1) == ["d", "b", "a"]  # c still runs
    assert history_to_delete(sessions, 0) == ["e", "d", "b", "a"]


def test_history_keeps_last_result_beside_a_running_session() -> None:
    sessions = [
        _s("old", "2026-01-01T00:01:00Z", "Succeeded"),
        _s("new", "2026-01-01T00:02:00Z", "Running"),
    ]
    assert history_to_delete(sessions, 1) == []
    assert history_to_delete(sessions, 1, completing="new") == ["old"]


def test_total_hosts() -> None:
    assert total_hosts("Deployment", {"spec": {"replicas": 3}}) == 1
    assert total_hosts("StatefulSet", {"spec": {"replicas": 3}}) == 3
    assert total_hosts("DaemonSet", {"status": {"desiredNumberScheduled": 2}}) == 2
    assert total_hosts("PersistentVolumeClaim", None) == 1


def test_a_new_daemonsets_host_count_is_not_known_until_its_controller_counted() -> None:
    # A RestoreSession applied with its DaemonSet counted 0 hosts and ended at once.
    assert not hosts_observed("DaemonSet", {"metadata": {"generation": 1}})
    assert not hosts_observed("DaemonSet", {"status": {"desiredNumberScheduled": 0}})
    counted = {"status": {"observedGeneration": 1, "desiredNumberScheduled": 2}}
    assert hosts_observed("DaemonSet", counted)
    assert hosts_observed("StatefulSet", {"spec": {"replicas": 3}})
    assert hosts_observed("Deployment", None)


#: Kubernetes' rule for a label value (apimachinery validation.IsValidLabelValue).
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LONG = "postgres-production-primary-nightly-full-backup-to-offsite-object-storage"


def test_label_values_stay_valid_stable_and_distinct_for_long_names() -> None:
    assert len(LONG) > 63
    assert label_value("bc") == "bc"
    value = label_value(LONG)
    assert len(value) <= 63 and LABEL_VALUE.fullmatch(value)
    assert value == label_value(LONG), "the same name always gives the same value"
    replica = LONG.replace("primary", "replica")
    assert label_value(replica) != value, "names sharing a beginning stay apart"
    for odd in ("-" * 80, "a_" * 40 + "-", "x." * 50):
        assert LABEL_VALUE.fullmatch(label_value(odd)) and len(label_value(odd)) <= 63


def test_a_long_invoker_and_target_name_give_valid_labels_its_selector_matches() -> None:
    invoker = {
        "kind": "BackupConfiguration",
        "metadata": {"name": LONG, "namespace": "demo", "uid": "u1"},
        "spec": {"target": {"ref": {"kind": "Deployment", "name": LONG + "-web"}}},
    }
    session = new_backup_session(invoker, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    labels = session["metadata"]["labels"]
    assert all(len(v) <= 63 and LABEL_VALUE.fullmatch(v) for v in labels.values()), labels
    assert session["spec"]["invoker"]["name"] == LONG, "the spec keeps the name in full"
    assert labels[LABEL_TARGET_NAME] == label_value(LONG + "-web")
    selected = dict(
        term.split("=") for term in invoker_selector("BackupConfiguration", LONG).split(",")
    )
    assert all(labels[k] == v for k, v in selected.items())
    assert selected[LABEL_INVOKER_NAME] == labels[LABEL_INVOKER_NAME]
    name = session["metadata"]["name"]
    beat = heartbeat_labels(name, "host-0")
    assert (
        heartbeat_selector(name)
        == f"stash.appscode.com/backup-session={beat['stash.appscode.com/backup-session']}"
    )
    assert all(len(v) <= 63 for v in beat.values())
