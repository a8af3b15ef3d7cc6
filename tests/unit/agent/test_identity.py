"""Host names and Lease names an agent derives from its pod (stash-api.md §4.4, §12)."""

from __future__ import annotations

import re

import pytest

from stash.agent.identity import (
    PodIdentity,
    backup_hostname,
    heartbeat_lease_name,
    workload_lease_name,
)

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@pytest.mark.parametrize(
    ("kind", "alias", "pod", "node", "host"),
    [
        ("Deployment", None, "web-5d8f-abcde", "node-1", "host-0"),
        ("Deployment", "app", "web-5d8f-abcde", "node-1", "app"),
        ("DeploymentConfig", None, "web-1-x", "node-1", "host-0"),
        ("StatefulSet", None, "db-2", "node-1", "host-2"),
        ("StatefulSet", "db", "db-12", "node-1", "db-12"),
        ("DaemonSet", None, "agent-xyz", "node-7", "node-7"),
        ("DaemonSet", "logs", "agent-xyz", "node-7", "logs-node-7"),
        ("PersistentVolumeClaim", None, "stash-backup-x", "", "host-0"),
    ],
)
def test_backup_hostname_follows_the_host_table(
    kind: str, alias: str | None, pod: str, node: str, host: str
) -> None:
    assert backup_hostname(kind, alias, pod, node) == host


def test_statefulset_pod_without_ordinal_is_an_error_that_names_the_pod() -> None:
    with pytest.raises(ValueError, match="db-primary"):
        backup_hostname("StatefulSet", None, "db-primary", "n")


def test_daemonset_without_node_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="NODE_NAME"):
        backup_hostname("DaemonSet", None, "agent-1", "")


def test_workload_lease_names_are_lowercase_as_upstream() -> None:
    assert workload_lease_name("StatefulSet", "DB", "backup") == "lock-statefulset-db-backup"
    assert workload_lease_name("Deployment", "web", "restore") == "lock-deployment-web-restore"


def test_heartbeat_lease_name_is_a_valid_and_distinct_lease_name() -> None:
    plain = heartbeat_lease_name("bc-1700000000", "host-0")
    assert plain == "stash-hb-bc-1700000000-host-0"
    odd = heartbeat_lease_name("bc-1700000000", "Node_A")
    assert DNS_SUBDOMAIN.match(odd)
    long_a = heartbeat_lease_name("s" * 250, "host-1")
    long_b = heartbeat_lease_name("s" * 250, "host-2")
    for name in (long_a, long_b):
        assert len(name) <= 253 and DNS_SUBDOMAIN.match(name)
    assert long_a != long_b


def test_pod_identity_reads_the_downward_api_env() -> None:
    pod = PodIdentity.from_env({"POD_NAME": "web-0", "POD_NAMESPACE": "demo", "NODE_NAME": "n1"})
    assert pod == PodIdentity("web-0", "demo", "n1")
