"""The database addon catalog (§9): Functions and Tasks per engine and version, plain
objects a user could write, whose args the agent's command line parses."""

from __future__ import annotations

from stash.api import Function, Task
from stash.cli.main import build_parser
from stash.controllers.addons import addon_functions, addon_tasks
from stash.controllers.catalog import builtin_functions, builtin_tasks
from stash.controllers.jobs import build_job


def test_catalog_names_and_steps() -> None:
    tasks = {t["metadata"]["name"]: t for t in addon_tasks()}
    for name in ("postgres-backup-15", "mariadb-backup-10.11", "mysql-backup-8.0"):
        steps = [s["name"] for s in tasks[name]["spec"]["steps"]]
        assert steps == [name, "update-status"]
        restore = name.replace("backup", "restore")
        assert [s["name"] for s in tasks[restore]["spec"]["steps"]] == [restore]
    functions = {f["metadata"]["name"] for f in addon_functions()}
    assert {s["name"] for t in tasks.values() for s in t["spec"]["steps"]} <= functions | {
        "update-status"
    }


def test_catalog_objects_validate_as_the_api_models_and_are_installed() -> None:
    for f in addon_functions():
        Function.model_validate(f)
    for t in addon_tasks():
        Task.model_validate(t)
    names = {f["metadata"]["name"] for f in builtin_functions()}
    assert {"postgres-backup-15", "mariadb-restore-10.11"} <= names
    assert "mysql-restore-8.0" in {t["metadata"]["name"] for t in builtin_tasks()}


def test_function_args_parse_after_substitution() -> None:
    functions = {f["metadata"]["name"]: f for f in builtin_functions()}
    task = next(t for t in addon_tasks() if t["metadata"]["name"] == "mariadb-backup-10.11")
    job = build_job(
        name="j",
        namespace="demo",
        task=task,
        functions=functions,
        inputs={"BACKUP_SESSION": "s-1", "NAMESPACE": "demo", "TARGET_NAME": "db"},
        invoker_params={"args": "--databases shop", "waitTimeout": "30"},
        labels={},
        owner={},
        service_account="sa",
        run_as_user=0,
    )
    (step,) = job["spec"]["template"]["spec"]["initContainers"]
    assert step["name"] == "mariadb-backup-10-11-0"  # dots -> dashes (S6)
    args = build_parser().parse_args(step["args"])
    assert args.dump_tool == "mariadb-dump"
    assert args.args == "--databases shop" and args.wait_timeout == "30"
    assert args.backupsession == "s-1" and args.appbinding == "db"


def test_every_addon_function_parses_as_its_step_command() -> None:
    parser = build_parser()
    for fn in addon_functions():
        args = parser.parse_args(fn["spec"]["args"])
        verb, _, engine = fn["spec"]["args"][0].partition("-")
        assert args.command_name == f"{verb}-{engine}"
        assert fn["metadata"]["name"].split("-")[1] == verb


def test_mongodb_task_params_reach_the_step_as_its_own_flags() -> None:
    functions = {f["metadata"]["name"]: f for f in builtin_functions()}
    task = next(t for t in addon_tasks() if t["metadata"]["name"] == "mongodb-restore-7.0")
    job = build_job(
        name="j",
        namespace="demo",
        task=task,
        functions=functions,
        inputs={"RESTORE_SESSION": "r-1", "NAMESPACE": "demo", "TARGET_NAME": "db"},
        invoker_params={"authMechanism": "PLAIN", "numParallelCollections": "1"},
        labels={},
        owner={},
        service_account="sa",
        run_as_user=0,
    )
    (step,) = job["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(step["args"])
    assert args.command_name == "restore-mongo"
    assert args.auth_mechanism == "PLAIN" and args.parallel_collections == "1"
