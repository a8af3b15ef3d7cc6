"""Auto-backup resolution (stash-api.md §3): annotations, variables, names, and the
objects a blueprint makes — each rule, and each bad input with the message a person reads."""

from __future__ import annotations

from typing import Any

import pytest

from stash.api import BackupBlueprint, BackupConfiguration
from stash.contract.autobackup import (
    ANN_AUTO_TARGET,
    ANN_BLUEPRINT,
    ANN_SCHEDULE,
    ANN_TARGET_PATHS,
    ANN_VOLUME_MOUNTS,
    Request,
    Target,
    legacy_names,
    object_name,
    owner_id,
    parse_annotations,
    target_variables,
)
from stash.contract.blueprint import Plan, candidate_names, resolve
from stash.inject import invoker_hash, last_applied
from stash.validation.autobackup import plan_problems

S1_BLUEPRINT: dict[str, Any] = {
    "apiVersion": "stash.appscode.com/v1beta1",
    "kind": "BackupBlueprint",
    "metadata": {"name": "wl-bp"},
    "spec": {
        "backend": {
            "s3": {
                "endpoint": "minio.demo.svc:443",
                "bucket": "b",
                "prefix": "stash/${TARGET_NAMESPACE}/${TARGET_KIND}/${TARGET_NAME}",
            },
            "storageSecretName": "s3-secret",
        },
        "schedule": "*/5 * * * *",
        "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
    },
}


def blueprint(name: str = "wl-bp", **spec: Any) -> BackupBlueprint:
    body = {**S1_BLUEPRINT, "metadata": {"name": name}}
    body["spec"] = {**S1_BLUEPRINT["spec"], **spec}
    return BackupBlueprint.model_validate(body)


def web(**annotations: str) -> Target:
    """S1's Deployment `web` (volume `data`) with these annotations (S1's by default)."""
    ann = annotations or {
        ANN_BLUEPRINT: "wl-bp",
        ANN_TARGET_PATHS: "/data",
        ANN_VOLUME_MOUNTS: "data:/data",
        ANN_SCHEDULE: "*/15 * * * *",
    }
    return Target("Deployment", "demo", "web", "uid-1", ann, frozenset({"data", "config"}))


def problems(target: Target, *bps: BackupBlueprint, existing: Any = None) -> list[str]:
    plan = resolve(target, {str(b.metadata.name): b for b in bps}, existing or {})
    assert not plan.backups
    return [str(p) for p in plan.problems]


def only(plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    assert plan.ok, plan.problems
    (one,) = plan.backups
    return one.repository, one.backup_configuration


# ------------------------------------------------------------------ S1


def test_s1_deployment_gets_the_repository_and_backupconfiguration_of_the_scenario() -> None:
    repo, bc = only(resolve(web(), {"wl-bp": blueprint()}, {}))
    assert repo["metadata"]["name"] == "deployment-web"
    assert repo["metadata"]["namespace"] == "demo"
    assert repo["spec"]["backend"]["s3"]["prefix"] == "stash/demo/deployment/web"
    assert repo["spec"]["backend"]["storageSecretName"] == "s3-secret"
    assert bc["metadata"]["name"] == "deployment-web"
    spec = bc["spec"]
    assert spec["schedule"] == "*/15 * * * *"  # the annotation wins over the blueprint
    assert spec["repository"] == {"name": "deployment-web"}
    assert spec["target"] == {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "paths": ["/data"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    assert spec["retentionPolicy"] == {"name": "keep-last-5", "keepLast": 5, "prune": True}
    for obj in (repo, bc):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "uid-1",
        }
        assert obj["metadata"]["annotations"][ANN_AUTO_TARGET] == "Deployment/demo/web"
    assert plan_problems(resolve(web(), {"wl-bp": blueprint()}, {})) == []


def test_schedule_comes_from_the_blueprint_without_the_annotation() -> None:
    target = web(
        **{ANN_BLUEPRINT: "wl-bp", ANN_TARGET_PATHS: "/data", ANN_VOLUME_MOUNTS: "data:/data"}
    )
    _, bc = only(resolve(target, {"wl-bp": blueprint()}, {}))
    assert bc["spec"]["schedule"] == "*/5 * * * *"


def test_the_stored_object_injects_exactly_as_the_plan_does() -> None:
    """The webhook injects for the plan; the operator then creates it; the apiserver
    writes the CRD defaults in. Both must give one hash and one last-applied record,
    or the workload would roll out twice."""
    hooks = {"postBackup": {"exec": {"command": ["true"]}}}
    _, bc = only(resolve(web(), {"wl-bp": blueprint(hooks=hooks)}, {}))
    planned = BackupConfiguration.model_validate(bc)
    stored_body = {**bc, "metadata": {**bc["metadata"], "uid": "x", "resourceVersion": "7"}}
    stored = BackupConfiguration.model_validate(stored_body)
    assert bc["spec"]["driver"] == "Restic"
    assert bc["spec"]["hooks"]["postBackup"]["executionPolicy"] == "Always"
    assert invoker_hash(planned) == invoker_hash(stored)
    assert last_applied(planned) == last_applied(stored)
    assert planned.spec is not None and planned.spec.to_wire() == bc["spec"]


def test_statefulset_mounts_may_name_claim_templates() -> None:
    ann = {
        ANN_BLUEPRINT: "wl-bp",
        ANN_TARGET_PATHS: "/var/lib/data",
        ANN_VOLUME_MOUNTS: "data:/var/lib/data",
    }
    sts = Target("StatefulSet", "demo", "db", "u", ann, frozenset({"data"}))
    repo, bc = only(resolve(sts, {"wl-bp": blueprint()}, {}))
    assert bc["metadata"]["name"] == "statefulset-db"
    assert repo["spec"]["backend"]["s3"]["prefix"] == "stash/demo/statefulset/db"


def test_pvc_needs_only_the_blueprint_and_may_list_several() -> None:
    pvc = Target("PersistentVolumeClaim", "demo", "data", "u", {ANN_BLUEPRINT: "a, b"})
    bp_b = blueprint(
        "b", backend={"s3": {"endpoint": "e", "bucket": "other"}, "storageSecretName": "s"}
    )
    plan = resolve(pvc, {"a": blueprint("a"), "b": bp_b}, {})
    assert plan.ok, plan.problems
    names = [p.backup_configuration["metadata"]["name"] for p in plan.backups]
    assert names == ["persistentvolumeclaim-data-a", "persistentvolumeclaim-data-b"]
    target = plan.backups[0].backup_configuration["spec"]["target"]
    assert target == {"ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}}


def test_appbinding_variables_task_params_and_another_namespace() -> None:
    app = Target(
        "AppBinding",
        "prod-1",
        "sample-mysql-1",
        "u",
        {ANN_BLUEPRINT: "db", "params.stash.appscode.com/args": "--all-databases"},
        app_type="kubedb.com/mysql",
        app_version="8.0.21",
    )
    bp = blueprint(
        "db",
        backupNamespace="backups",
        task={
            "name": "mysql-backup-${TARGET_APP_VERSION}",
            "params": [
                {"name": "args", "value": "x"},
                {"name": "keep", "value": "${REPOSITORY_BUCKET}"},
            ],
        },
        backend={
            "gcs": {
                "bucket": "b",
                "prefix": "${TARGET_APP_GROUP}/${TARGET_APP_RESOURCE}/${TARGET_NAME}",
            },
            "storageSecretName": "s",
        },
    )
    repo, bc = only(resolve(app, {"db": bp}, {}))
    assert repo["spec"]["backend"]["gcs"]["prefix"] == "kubedb.com/mysql/sample-mysql-1"
    assert bc["metadata"]["name"] == "prod-1-app-sample-mysql-1"
    assert bc["metadata"]["namespace"] == "backups"
    assert "ownerReferences" not in bc["metadata"]  # no owner across namespaces
    assert bc["spec"]["task"] == {
        "name": "mysql-backup-8.0.21",
        "params": [
            {"name": "args", "value": "--all-databases"},  # the annotation wins
            {"name": "keep", "value": "${REPOSITORY_BUCKET}"},  # left for the Job builder
        ],
    }
    assert bc["spec"]["target"]["ref"]["namespace"] == "prod-1"
    assert target_variables(app)["TARGET_RESOURCE"] == "appbindings"


def test_repo_namespace_names_the_repository_after_the_target_namespace() -> None:
    repo, bc = only(resolve(web(), {"wl-bp": blueprint(repoNamespace="backups")}, {}))
    assert (repo["metadata"]["namespace"], repo["metadata"]["name"]) == (
        "backups",
        "demo-deployment-web",
    )
    assert bc["spec"]["repository"] == {"name": "demo-deployment-web", "namespace": "backups"}


# ------------------------------------------------------------------ names


def test_names_are_at_most_63_characters_and_distinct() -> None:
    a = Target("Deployment", "demo", "x" * 60 + "-primary", volumes=frozenset())
    b = Target("Deployment", "demo", "x" * 60 + "-replica", volumes=frozenset())
    na, nb = object_name(a, "demo"), object_name(b, "demo")
    assert len(na) == len(nb) == 63 and na != nb
    assert object_name(a, "demo") == na  # stable


def test_older_names_owned_by_the_target_are_adopted() -> None:
    t = web()
    assert legacy_names(t, "demo") == ["deploy-web"]
    existing = {("BackupConfiguration", "demo", "deploy-web"): t.id}
    _, bc = only(resolve(t, {"wl-bp": blueprint()}, existing))
    assert bc["metadata"]["name"] == "deploy-web"
    assert ("BackupConfiguration", "demo", "deploy-web") in candidate_names(
        t, ("wl-bp",), {"wl-bp": blueprint()}
    )


def test_owner_id_of_ours_upstreams_and_hand_written() -> None:
    ours = {"metadata": {"annotations": {ANN_AUTO_TARGET: "Deployment/demo/web"}}}
    upstream = {
        "metadata": {
            "namespace": "demo",
            "ownerReferences": [{"kind": "StatefulSet", "name": "db", "uid": "1"}],
        }
    }
    assert owner_id(ours) == "Deployment/demo/web"
    assert owner_id(upstream) == "StatefulSet/demo/db"
    assert owner_id({"metadata": {}}) == ""


# ------------------------------------------------------------------ bad input


def test_unknown_blueprint() -> None:
    assert problems(web()) == [
        f'{ANN_BLUEPRINT}: BackupBlueprint "wl-bp" does not exist; create it or fix the name'
    ]


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        ("data", 'entry "data" is not name:mountPath[:subPath] (e.g. data:/var/data)'),
        ("data:/a:b:c", 'entry "data:/a:b:c" is not name:mountPath[:subPath]'),
        (":/data", 'entry ":/data" is not name:mountPath[:subPath]'),
        ("Data:/data", '"Data" is not a volume name'),
        ("data:data", 'mountPath "data" is not absolute'),
        ("data:/data:/abs", 'subPath "/abs" must be a relative path without ".."'),
        ("data:/data:../up", 'subPath "../up" must be a relative path'),
        ("data:/data,config:/data", 'mountPath "/data" appears twice'),
        (" , ", "is empty; give name:mountPath[:subPath]"),
    ],
)
def test_malformed_volume_mounts(mounts: str, message: str) -> None:
    target = web(**{ANN_BLUEPRINT: "wl-bp", ANN_TARGET_PATHS: "/data", ANN_VOLUME_MOUNTS: mounts})
    (got,) = problems(target, blueprint())
    assert got.startswith(f"{ANN_VOLUME_MOUNTS}: ") and message in got


def test_a_mount_the_pod_template_lacks() -> None:
    target = web(
        **{ANN_BLUEPRINT: "wl-bp", ANN_TARGET_PATHS: "/cache", ANN_VOLUME_MOUNTS: "cache:/cache"}
    )
    assert problems(target, blueprint()) == [
        f'{ANN_VOLUME_MOUNTS}: volume "cache" is not in the Deployment\'s pod template '
        "(its volumes: config, data); name one of them"
    ]


def test_workload_annotations_are_required_and_paths_must_be_mounted() -> None:
    bare = web(**{ANN_BLUEPRINT: "wl-bp"})
    assert problems(bare, blueprint()) == [
        f"{ANN_TARGET_PATHS}: is required on a Deployment with {ANN_BLUEPRINT}",
        f"{ANN_VOLUME_MOUNTS}: is required on a Deployment with {ANN_BLUEPRINT}",
    ]
    outside = web(
        **{ANN_BLUEPRINT: "wl-bp", ANN_TARGET_PATHS: "/etc", ANN_VOLUME_MOUNTS: "data:/data"}
    )
    (got,) = problems(outside, blueprint())
    assert got.startswith(f'{ANN_TARGET_PATHS}: "/etc" is under none of the mounts')
    relative = web(
        **{ANN_BLUEPRINT: "wl-bp", ANN_TARGET_PATHS: "data", ANN_VOLUME_MOUNTS: "data:/data"}
    )
    assert problems(relative, blueprint()) == [
        f'{ANN_TARGET_PATHS}: "data" is not an absolute path'
    ]


def test_blueprint_names_and_lists_on_a_workload() -> None:
    ann = {ANN_TARGET_PATHS: "/data", ANN_VOLUME_MOUNTS: "data:/data"}
    assert problems(web(**ann, **{ANN_BLUEPRINT: ""})) == [
        f"{ANN_BLUEPRINT}: is empty; name a BackupBlueprint"
    ]
    assert problems(web(**ann, **{ANN_BLUEPRINT: "Bad_Name"})) == [
        f'{ANN_BLUEPRINT}: "Bad_Name" is not a BackupBlueprint name (a DNS name)'
    ]
    (got,) = problems(web(**ann, **{ANN_BLUEPRINT: "a,b"}))
    assert "a workload takes one blueprint" in got


def test_bad_schedule_annotation() -> None:
    ann = {ANN_BLUEPRINT: "wl-bp", ANN_TARGET_PATHS: "/data", ANN_VOLUME_MOUNTS: "data:/data"}
    (got,) = problems(web(**ann, **{ANN_SCHEDULE: "every day"}), blueprint())
    assert got.startswith(f"{ANN_SCHEDULE}: ")


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        (
            "${TARGET_APP_VERSION}",
            "${TARGET_APP_VERSION} has no value for a Deployment: only AppBinding targets have it",
        ),
        ("${CLUSTER}", "${CLUSTER} is not a blueprint variable (known: ${TARGET_API_VERSION}"),
        ("${TARGET_NAMES}", "${TARGET_NAMES} is not a blueprint variable"),
    ],
)
def test_variables_that_cannot_be_expanded(prefix: str, message: str) -> None:
    bp = blueprint(
        backend={"s3": {"endpoint": "e", "bucket": "b", "prefix": prefix}, "storageSecretName": "s"}
    )
    (got,) = problems(web(), bp)
    assert got.startswith("BackupBlueprint wl-bp spec.backend.s3.prefix: ") and message in got


def test_a_default_stands_in_for_a_variable_without_value() -> None:
    bp = blueprint(
        backend={
            "s3": {"endpoint": "e", "bucket": "b", "prefix": "${TARGET_APP_VERSION:=none}/x"},
            "storageSecretName": "s",
        }
    )
    repo, _ = only(resolve(web(), {"wl-bp": bp}, {}))
    assert repo["spec"]["backend"]["s3"]["prefix"] == "none/x"


def test_a_blueprint_without_what_a_backupconfiguration_needs() -> None:
    bp = BackupBlueprint.model_validate({"metadata": {"name": "wl-bp"}, "spec": {}})
    ann = {ANN_BLUEPRINT: "wl-bp", ANN_TARGET_PATHS: "/data", ANN_VOLUME_MOUNTS: "data:/data"}
    assert problems(web(**ann), bp) == [
        "BackupBlueprint wl-bp spec.backend: required: where the Repository is stored",
        "BackupBlueprint wl-bp spec.retentionPolicy: required: a BackupConfiguration needs one",
        f"BackupBlueprint wl-bp spec.schedule: no schedule: set it here or annotate {ANN_SCHEDULE}",
    ]


def test_a_workload_backupconfiguration_stays_in_its_namespace() -> None:
    (got,) = problems(web(), blueprint(backupNamespace="elsewhere"))
    assert "a Deployment's BackupConfiguration must be in its namespace demo" in got


def test_appbinding_needs_a_task() -> None:
    app = Target(
        "AppBinding", "demo", "pg", "u", {ANN_BLUEPRINT: "wl-bp"}, app_type="kubedb.com/postgres"
    )
    (got,) = problems(app, blueprint())
    assert got.startswith("BackupBlueprint wl-bp spec.task.name: required for an AppBinding")


def test_two_blueprints_producing_the_same_repository() -> None:
    pvc = Target("PersistentVolumeClaim", "demo", "data", "u", {ANN_BLUEPRINT: "a,b"})
    (got,) = problems(pvc, blueprint("a"), blueprint("b"))
    assert "blueprints a and b resolve to the same backend location" in got


@pytest.mark.parametrize(
    ("owner", "who"),
    [
        ("", "a hand-written object"),
        ("Deployment/demo/other", "the auto-backup of Deployment/demo/other"),
    ],
)
def test_a_name_someone_else_owns(owner: str, who: str) -> None:
    existing = {("Repository", "demo", "deployment-web"): owner}
    (got,) = problems(web(), blueprint(), existing=existing)
    assert f"Repository demo/deployment-web already exists and is {who}" in got


def test_objects_validation_would_refuse_are_reported() -> None:
    bp = blueprint(retentionPolicy={"name": "r", "keepLast": -1})
    plan = resolve(web(), {"wl-bp": bp}, {})
    (got,) = [str(p) for p in plan_problems(plan)]
    assert (
        "BackupBlueprint wl-bp makes BackupConfiguration deployment-web that would be refused"
        in got
    )
    assert "keepLast" in got


def test_parse_annotations_result() -> None:
    got = parse_annotations(web())
    assert isinstance(got, Request)
    assert got.blueprints == ("wl-bp",) and got.paths == ("/data",)
    assert [m.to_wire() for m in got.mounts] == [{"name": "data", "mountPath": "/data"}]
