"""The pure injector: what a workload looks like after the agent is injected or removed."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stash.api import BackupConfiguration, Repository, RestoreSession
from stash.inject import (
    ANN_BACKUP_HASH,
    ANN_BACKUP_INVOKER,
    ANN_BACKUP_INVOKER_KIND,
    ANN_RESTORE_HASH,
    ANN_RESTORE_INVOKER_KIND,
    desired_workload,
    inject_backup,
    inject_restore,
    invoker_hash,
    remove_backup,
    remove_restore,
    select_backup_invoker,
)
from stash.settings import OperatorSettings

SETTINGS = OperatorSettings(
    docker_registry="reg.example", image="stash", image_tag="1.2.3", namespace="stash"
)


def workload(kind: str = "Deployment", name: str = "web") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [
                    {
                        "name": "app",
                        "image": "nginx",
                        "volumeMounts": [{"name": "data", "mountPath": "/var/www"}],
                    }
                ],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
            },
        }
    }
    if kind not in ("ReplicationController",):
        spec["selector"] = {"matchLabels": {"app": name}}
    api = "v1" if kind == "ReplicationController" else "apps/v1"
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": "demo", "labels": {"team": "a"}},
        "spec": spec,
    }


def backup_config(kind: str = "Deployment", **spec: Any) -> BackupConfiguration:
    body: dict[str, Any] = {
        "schedule": "*/5 * * * *",
        "repository": {"name": "repo"},
        "retentionPolicy": {"name": "keep", "keepLast": 5, "prune": True},
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": kind, "name": "web"},
            "paths": ["/var/www"],
            "volumeMounts": [{"name": "data", "mountPath": "/var/www"}],
        },
    }
    body.update(spec)
    return BackupConfiguration.model_validate(
        {"metadata": {"name": "web-backup", "namespace": "demo"}, "spec": body}
    )


def restore_session(kind: str = "Deployment", **spec: Any) -> RestoreSession:
    body: dict[str, Any] = {
        "repository": {"name": "repo"},
        "target": {
            "ref": {"apiVersion": "apps/v1", "kind": kind, "name": "web"},
            "volumeMounts": [{"name": "data", "mountPath": "/var/www"}],
            "rules": [{"paths": ["/var/www"]}],
        },
    }
    body.update(spec)
    return RestoreSession.model_validate(
        {"metadata": {"name": "web-restore", "namespace": "demo"}, "spec": body}
    )


def repository(backend: dict[str, Any]) -> Repository:
    return Repository.model_validate(
        {
            "metadata": {"name": "repo", "namespace": "demo"},
            "spec": {"backend": {"storageSecretName": "s", **backend}},
        }
    )


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def named(items: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [i for i in items if i["name"] == name]


# ------------------------------------------------------------------ backup


def test_backup_sidecar_has_documented_command_args_env_and_mounts() -> None:
    out = inject_backup(workload(), backup_config(), SETTINGS)
    sidecars = named(pod_spec(out)["containers"], "stash")
    assert len(sidecars) == 1
    sc = sidecars[0]
    assert sc["image"] == "reg.example/stash:1.2.3"
    assert sc["command"] == ["stash"]
    assert sc["args"] == [
        "run-backup",
        "--invoker-name=web-backup",
        "--invoker-kind=BackupConfiguration",
        "--target-name=web",
        "--target-namespace=demo",
        "--target-kind=Deployment",
        "--enable-cache=true",
        "--max-connections=0",
        "--metrics-enabled=true",
        "--pushgateway-url=",
    ]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in sc["env"]}
    assert env == {
        "NODE_NAME": "spec.nodeName",
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
    }
    assert sc["volumeMounts"] == [
        {"name": "stash-tmp-dir", "mountPath": "/stash-tmp"},
        {"name": "data", "mountPath": "/var/www"},
    ]
    assert named(pod_spec(out)["volumes"], "stash-tmp-dir") == [
        {"name": "stash-tmp-dir", "emptyDir": {}}
    ]
    # the app container and the user's init container are untouched
    assert pod_spec(out)["containers"][0] == pod_spec(workload())["containers"][0]
    assert pod_spec(out)["initContainers"] == pod_spec(workload())["initContainers"]


def test_backup_records_invoker_on_workload_and_hash_on_template() -> None:
    bc = backup_config()
    out = inject_backup(workload(), bc, SETTINGS)
    anns = out["metadata"]["annotations"]
    assert anns[ANN_BACKUP_INVOKER_KIND] == "BackupConfiguration"
    assert json.loads(anns[ANN_BACKUP_INVOKER]) == {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupConfiguration",
        "metadata": {"name": "web-backup", "namespace": "demo"},
    }
    assert out["spec"]["template"]["metadata"]["annotations"][ANN_BACKUP_HASH] == invoker_hash(bc)
    assert out["spec"]["template"]["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize(
    "kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController"]
)
def test_injecting_twice_changes_nothing(kind: str) -> None:
    repo = repository({"local": {"mountPath": "/safe", "hostPath": {"path": "/srv/backup"}}})
    once = inject_restore(
        inject_backup(workload(kind), backup_config(kind), SETTINGS, repo),
        restore_session(kind),
        SETTINGS,
        repo,
    )
    twice = inject_restore(
        inject_backup(once, backup_config(kind), SETTINGS, repo),
        restore_session(kind),
        SETTINGS,
        repo,
    )
    assert twice == once
    assert len(named(pod_spec(twice)["containers"], "stash")) == 1
    assert len(named(pod_spec(twice)["initContainers"], "stash-init")) == 1


def test_input_is_never_modified() -> None:
    original = workload()
    frozen = copy.deepcopy(original)
    injected = inject_backup(original, backup_config(), SETTINGS)
    inject_restore(original, restore_session(), SETTINGS)
    assert original == frozen
    snapshot = copy.deepcopy(injected)
    remove_backup(injected)
    assert injected == snapshot


def test_remove_backup_restores_the_original_workload() -> None:
    original = workload()
    repo = repository({"local": {"mountPath": "/safe", "hostPath": {"path": "/srv"}}})
    settings = SETTINGS.model_copy(update={"image_pull_secrets": ["regcred"]})
    injected = inject_backup(original, backup_config(), settings, repo)
    assert remove_backup(injected) == original


def test_scratch_volume_stays_while_restore_init_container_remains() -> None:
    original = workload()
    both = inject_restore(
        inject_backup(original, backup_config(), SETTINGS), restore_session(), SETTINGS
    )
    only_restore = remove_backup(both)
    assert named(pod_spec(only_restore)["volumes"], "stash-tmp-dir")
    assert not named(pod_spec(only_restore)["containers"], "stash")
    assert ANN_RESTORE_INVOKER_KIND in only_restore["metadata"]["annotations"]
    assert ANN_BACKUP_INVOKER_KIND not in only_restore["metadata"]["annotations"]
    assert remove_restore(only_restore) == original


def test_disable_caching_and_max_connections_reach_the_args() -> None:
    bc = backup_config(tempDir={"disableCaching": True, "medium": "Memory", "sizeLimit": "1Gi"})
    repo = repository({"gcs": {"bucket": "b", "maxConnections": 8}})
    out = inject_backup(workload(), bc, SETTINGS, repo)
    sc = named(pod_spec(out)["containers"], "stash")[0]
    assert "--enable-cache=false" in sc["args"]
    assert "--max-connections=8" in sc["args"]
    assert named(pod_spec(out)["volumes"], "stash-tmp-dir") == [
        {"name": "stash-tmp-dir", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}
    ]


def test_local_backend_is_mounted_into_the_sidecar() -> None:
    repo = repository(
        {
            "local": {
                "mountPath": "/safe/data",
                "subPath": "team-a",
                "nfs": {"server": "n", "path": "/x"},
            }
        }
    )
    out = inject_backup(workload(), backup_config(), SETTINGS, repo)
    sc = named(pod_spec(out)["containers"], "stash")[0]
    assert {"name": "stash-local", "mountPath": "/safe/data", "subPath": "team-a"} in sc[
        "volumeMounts"
    ]
    assert named(pod_spec(out)["volumes"], "stash-local") == [
        {"name": "stash-local", "nfs": {"server": "n", "path": "/x"}}
    ]


def test_a_local_backend_volume_carries_what_the_apiserver_would_default() -> None:
    # Without hostPath.type the stored template never equalled the desired one: every
    # pass patched it again and a ReplicaSet's pods were never seen as stale.
    repo = repository({"local": {"mountPath": "/safe/data", "hostPath": {"path": "/b"}}})
    out = inject_backup(workload(), backup_config(), SETTINGS, repo)
    assert named(pod_spec(out)["volumes"], "stash-local") == [
        {"name": "stash-local", "hostPath": {"type": "", "path": "/b"}}
    ]
    typed = repository(
        {"local": {"mountPath": "/safe/data", "hostPath": {"path": "/b", "type": "Directory"}}}
    )
    out = inject_backup(workload(), backup_config(), SETTINGS, typed)
    assert named(pod_spec(out)["volumes"], "stash-local")[0]["hostPath"]["type"] == "Directory"


def test_runtime_settings_apply_to_the_sidecar() -> None:
    container = {
        "resources": {"limits": {"memory": "256Mi"}},
        "env": [{"name": "POD_NAME", "value": "override"}, {"name": "EXTRA", "value": "1"}],
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "livenessProbe": {"exec": {"command": ["true"]}},
        "securityContext": {"runAsUser": 2000},
        "nice": {"adjustment": 5},
        "ionice": {"class": 2, "classData": 4},
    }
    out = inject_backup(
        workload(), backup_config(runtimeSettings={"container": container}), SETTINGS
    )
    sc = named(pod_spec(out)["containers"], "stash")[0]
    assert sc["resources"] == {"limits": {"memory": "256Mi"}}
    env = {e["name"]: e.get("value") for e in sc["env"]}
    assert env["POD_NAME"] == "override"  # the user's entry replaces ours
    assert env["EXTRA"] == "1"
    assert env["NICE_ADJUSTMENT"] == "5"
    assert env["IONICE_CLASS"] == "2" and env["IONICE_CLASS_DATA"] == "4"
    assert sc["envFrom"] == [{"configMapRef": {"name": "cfg"}}]
    assert sc["livenessProbe"] == {"exec": {"command": ["true"]}}
    assert sc["securityContext"]["runAsUser"] == 2000
    assert sc["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_sidecar_is_unprivileged_and_runs_as_the_container_whose_volume_it_reads() -> None:
    w = workload()
    pod_spec(w)["containers"][0]["securityContext"] = {"runAsUser": 1000, "runAsNonRoot": True}
    out = inject_backup(w, backup_config(), SETTINGS)
    sc = named(pod_spec(out)["containers"], "stash")[0]["securityContext"]
    assert sc == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsUser": 1000,
        "runAsNonRoot": True,
    }


def test_image_pull_secrets_are_added_and_removal_keeps_the_users_own() -> None:
    w = workload()
    pod_spec(w)["imagePullSecrets"] = [{"name": "mine"}]
    settings = SETTINGS.model_copy(update={"image_pull_secrets": ["mine", "stash-pull"]})
    out = inject_backup(w, backup_config(), settings)
    assert pod_spec(out)["imagePullSecrets"] == [{"name": "mine"}, {"name": "stash-pull"}]
    assert remove_backup(out) == w


# ------------------------------------------------------------------ restore


def test_restore_init_container_is_prepended_with_restore_args() -> None:
    out = inject_restore(workload(), restore_session(), SETTINGS)
    inits = pod_spec(out)["initContainers"]
    assert [c["name"] for c in inits] == ["stash-init", "setup"]
    init = inits[0]
    assert init["command"] == ["stash"]
    assert init["args"][:3] == [
        "restore",
        "--invoker-kind=RestoreSession",
        "--invoker-name=web-restore",
    ]
    assert "--target-kind=Deployment" in init["args"]
    assert {"name": "data", "mountPath": "/var/www"} in init["volumeMounts"]
    assert out["spec"]["template"]["metadata"]["annotations"][ANN_RESTORE_HASH]


def test_restore_runs_as_root_with_ownership_capabilities_unless_pod_is_non_root() -> None:
    rs = restore_session(runtimeSettings={"container": {"livenessProbe": {"exec": {}}}})
    init = pod_spec(inject_restore(workload(), rs, SETTINGS))["initContainers"][0]
    assert init["securityContext"]["runAsUser"] == 0
    assert init["securityContext"]["runAsGroup"] == 0
    assert init["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "CHOWN" in init["securityContext"]["capabilities"]["add"]
    assert "livenessProbe" not in init  # the apiserver refuses probes on init containers

    w = workload()
    pod_spec(w)["securityContext"] = {"runAsNonRoot": True, "runAsUser": 1001}
    init = pod_spec(inject_restore(w, restore_session(), SETTINGS))["initContainers"][0]
    assert "runAsUser" not in init["securityContext"]  # inherits the pod's user
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_existing_stash_init_is_replaced_where_it_stands() -> None:
    w = inject_restore(workload(), restore_session(), SETTINGS)
    # another webhook put its own init container first after us
    pod_spec(w)["initContainers"].insert(0, {"name": "istio-init", "image": "proxy"})
    again = inject_restore(w, restore_session(), SETTINGS)
    assert [c["name"] for c in pod_spec(again)["initContainers"]] == [
        "istio-init",
        "stash-init",
        "setup",
    ]


# ------------------------------------------------------------------ hash and selection


def test_hash_ignores_fields_the_operator_handles_but_follows_the_target() -> None:
    base = invoker_hash(backup_config())
    assert invoker_hash(backup_config()) == base
    assert invoker_hash(backup_config(schedule="0 * * * *", paused=True)) == base
    assert (
        invoker_hash(backup_config(retentionPolicy={"name": "k", "keepLast": 1, "prune": False}))
        == base
    )
    other_target = backup_config()
    assert other_target.spec is not None and other_target.spec.target is not None
    other_target.spec.target.paths = ["/var/www", "/etc"]
    assert invoker_hash(other_target) != base


def test_newest_matching_backup_configuration_is_selected() -> None:
    old, new, other = backup_config(), backup_config(), backup_config("StatefulSet")
    old.metadata.name, new.metadata.name = "old", "new"
    old.metadata.creation_timestamp = datetime(2024, 1, 1, tzinfo=UTC)
    new.metadata.creation_timestamp = datetime(2025, 1, 1, tzinfo=UTC)
    chosen = select_backup_invoker([old, other, new], "Deployment", "demo", "web")
    assert chosen is new
    assert select_backup_invoker([old, new], "Deployment", "other-ns", "web") is None
    job_model = backup_config(task={"name": "pvc-backup"})
    assert select_backup_invoker([job_model], "Deployment", "demo", "web") is None


# ------------------------------------------------------------------ desired_workload


def test_desired_workload_removes_injection_when_invoker_is_gone_or_deleting() -> None:
    original = workload()
    injected = inject_backup(original, backup_config(), SETTINGS)
    assert desired_workload(injected, None, None, SETTINGS, {}).workload == original
    deleting = backup_config()
    deleting.metadata.deletion_timestamp = datetime.now(UTC)
    assert desired_workload(injected, deleting, None, SETTINGS, {}).workload == original


def test_desired_workload_uses_the_invokers_repository() -> None:
    repo = repository({"local": {"mountPath": "/safe", "hostPath": {"path": "/srv"}}})
    result = desired_workload(workload(), backup_config(), None, SETTINGS, {"demo/repo": repo})
    assert named(pod_spec(result.workload)["volumes"], "stash-local")
    assert result.problems == ()


def test_desired_workload_refuses_to_mount_volumes_the_pod_does_not_have() -> None:
    bc = backup_config(
        target={
            "ref": {"kind": "Deployment", "name": "web"},
            "paths": ["/x"],
            "volumeMounts": [{"name": "typo", "mountPath": "/x"}],
        }
    )
    result = desired_workload(workload(), bc, None, SETTINGS, {})
    assert result.workload == workload()
    assert len(result.problems) == 1 and '"typo"' in result.problems[0]


def _statefulset_with_claim_template() -> dict[str, Any]:
    sts = workload("StatefulSet")
    del sts["spec"]["template"]["spec"]["volumes"]
    sts["spec"]["volumeClaimTemplates"] = [
        {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    ]
    return sts


def test_statefulset_claim_template_volumes_may_be_mounted_for_backup_and_restore() -> None:
    # the most common StatefulSet shape of Stash's guides: the volume comes from
    # volumeClaimTemplates, not from the pod template
    sts = _statefulset_with_claim_template()
    result = desired_workload(
        sts, backup_config("StatefulSet"), restore_session("StatefulSet"), SETTINGS, {}
    )
    assert result.problems == ()
    spec = pod_spec(result.workload)
    sidecar = named(spec["containers"], "stash")[0]
    assert any(
        m["name"] == "data" and m["mountPath"] == "/var/www" for m in sidecar["volumeMounts"]
    )
    init = named(spec["initContainers"], "stash-init")[0]
    assert any(m["name"] == "data" for m in init["volumeMounts"])


def test_claim_template_names_count_only_for_statefulsets() -> None:
    deployment = workload()
    deployment["spec"]["volumeClaimTemplates"] = [{"metadata": {"name": "other"}}]
    bc = backup_config(
        target={
            "ref": {"kind": "Deployment", "name": "web"},
            "paths": ["/x"],
            "volumeMounts": [{"name": "other", "mountPath": "/x"}],
        }
    )
    result = desired_workload(deployment, bc, None, SETTINGS, {})
    assert len(result.problems) == 1 and "volumeClaimTemplates" in result.problems[0]


def test_pod_mode_injects_pods_and_cleans_workload_templates() -> None:
    pod_mode = SETTINGS.model_copy(update={"injection_mode": "pod"})
    injected = inject_backup(workload(), backup_config(), SETTINGS)
    assert desired_workload(injected, backup_config(), None, pod_mode, {}).workload == workload()

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": "demo"},
        "spec": copy.deepcopy(pod_spec(workload())),
    }
    out = desired_workload(pod, backup_config(), restore_session(), pod_mode, {}).workload
    assert [c["name"] for c in out["spec"]["containers"]] == ["app", "stash"]
    assert out["spec"]["initContainers"][0]["name"] == "stash-init"
    assert out["metadata"]["annotations"][ANN_BACKUP_HASH]
    # in workload mode pods are left alone
    assert desired_workload(pod, backup_config(), None, SETTINGS, {}).workload == pod


def test_removal_from_a_workload_never_injected_changes_nothing() -> None:
    w = workload()
    pod_spec(w)["volumes"] = []
    pod_spec(w)["imagePullSecrets"] = []
    w["metadata"]["annotations"] = {}
    assert desired_workload(w, None, None, SETTINGS, {}).workload == w


def test_the_workload_never_gets_a_copy_of_the_invokers_spec() -> None:
    # Anyone who may read the Deployment (or reach the webhook) read the spec, env values
    # included, from the last-applied annotation.
    secret = "s3cr3t-value"
    env = [{"name": "API_TOKEN", "value": secret}]
    bc = backup_config(runtimeSettings={"container": {"env": env}})
    out = inject_backup(workload(), bc, SETTINGS)
    assert secret not in json.dumps(out["metadata"])
    assert secret not in json.dumps(out["spec"]["template"]["metadata"])


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [i["name"] for i in items]


def _shared_repository(policy: dict[str, Any] | None) -> Repository:
    spec: dict[str, Any] = {
        "backend": {"storageSecretName": "s", "s3": {"endpoint": "e", "bucket": "b"}}
    }
    if policy:
        spec["usagePolicy"] = {"allowedNamespaces": policy}
    return Repository.model_validate(
        {"metadata": {"name": "shared", "namespace": "backups"}, "spec": spec}
    )


def test_no_agent_for_an_invoker_the_repositorys_usage_policy_refuses() -> None:
    bc = backup_config(repository={"name": "shared", "namespace": "backups"})
    refused = desired_workload(
        workload(), bc, None, SETTINGS, {"backups/shared": _shared_repository(None)}
    )
    assert _names(pod_spec(refused.workload)["containers"]) == ["app"]
    assert 'does not allow use from namespace "demo"' in refused.problems[0]
    # unknown: not found, or labels unknown for a selector
    missing = desired_workload(workload(), bc, None, SETTINGS, {})
    assert _names(pod_spec(missing.workload)["containers"]) == ["app"]
    assert "cannot be checked" in missing.problems[0]
    selector = {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}
    repos = {"backups/shared": _shared_repository(selector)}
    assert desired_workload(workload(), bc, None, SETTINGS, repos).problems
    allowed = desired_workload(workload(), bc, None, SETTINGS, repos, {"team": "a"})
    assert _names(pod_spec(allowed.workload)["containers"]) == ["app", "stash"]
    assert not allowed.problems
    # an injected workload whose invoker became refused loses the agent
    again = desired_workload(allowed.workload, bc, None, SETTINGS, repos, {"team": "b"})
    assert _names(pod_spec(again.workload)["containers"]) == ["app"]
