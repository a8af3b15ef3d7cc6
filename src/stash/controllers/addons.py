"""The database addon catalog (stash-api.md §9) as data: Functions and Tasks per engine
and version, installed by the leader at start-up with the built-ins (`catalog`).

What it is for: `addon_functions()` and `addon_tasks()` — for each engine version,
Functions `<db>-backup-<v>` / `<db>-restore-<v>` running `stash backup-<engine>` /
`stash restore-<engine>` (their args rendered from the flag table the agent parses,
`contract.steps`), and Tasks `<db>-backup-<v>` = [`<db>-backup-<v>`, `update-status`]
and `<db>-restore-<v>` = [`<db>-restore-<v>`]. They are plain objects a user could
write: nothing in the operator or the agent knows their names. The version in a name
says which server the Task is meant for; every version runs the client tools of the
agent image (a newer client dumps older servers).

Task parameters (`task.params` of the invoker, or the AppBinding's addon params):
`args` (extra arguments of the dump tool on backup, of the load tool on restore),
`backupCMD` / `restoreCMD` (the tool, e.g. `pg_dump`), `waitTimeout` (seconds); MongoDB
also `authMechanism` (e.g. `PLAIN` for FerretDB, `SCRAM-SHA-256`) and
`numParallelCollections`; Elasticsearch/OpenSearch `indices` (an index pattern).

Not for: installing them (the operator) or running them (`stash.agent.dbsteps`).
"""

from __future__ import annotations

from stash.contract.steps import step_args
from stash.kube.client import JSON

__all__ = ["ADDON_VERSIONS", "addon_functions", "addon_tasks"]

STASH_IMAGE = "${STASH_DOCKER_REGISTRY}/${STASH_DOCKER_IMAGE}:${STASH_IMAGE_TAG}"
LABELS = {"app.kubernetes.io/managed-by": "stash.appscode.com"}

#: catalog name -> (engine of the step commands, versions, tools for the flags).
ADDON_VERSIONS: dict[str, tuple[str, tuple[str, ...], dict[str, str], dict[str, str]]] = {
    "postgres": ("pg", ("14", "15", "16"), {}, {}),
    "mariadb": (
        "mysql",
        ("10.11",),
        {"dump-tool": "${backupCMD:=mariadb-dump}"},
        {"load-tool": "${restoreCMD:=mariadb}"},
    ),
    "mysql": ("mysql", ("8.0",), {}, {}),
    "redis": ("redis", ("6.2", "7.0", "7.2"), {}, {}),
    "mongodb": ("mongo", ("5.0", "6.0", "7.0"), {}, {}),
    "elasticsearch": ("es", ("7.10", "7.17", "8.2"), {}, {}),
    "opensearch": ("es", ("1.3", "2.19"), {}, {}),
}


def _meta(name: str, db: str, version: str) -> JSON:
    labels = {**LABELS, "stash.appscode.com/addon": db, "stash.appscode.com/addon-version": version}
    return {"name": name, "labels": labels}


def addon_functions() -> list[JSON]:
    """Every addon Function (module docstring)."""
    out: list[JSON] = []
    for db, (engine, versions, backup_tools, restore_tools) in ADDON_VERSIONS.items():
        for version in versions:
            for verb, values in (("backup", backup_tools), ("restore", restore_tools)):
                out.append(
                    {
                        "apiVersion": "stash.appscode.com/v1beta1",
                        "kind": "Function",
                        "metadata": _meta(f"{db}-{verb}-{version}", db, version),
                        "spec": {
                            "image": STASH_IMAGE,
                            "command": ["stash"],
                            "args": step_args(f"{verb}-{engine}", values),
                        },
                    }
                )
    return out


def addon_tasks() -> list[JSON]:
    """Every addon Task (module docstring)."""
    out_dir = {"name": "outputDir", "value": "/stash-tmp/output"}
    out: list[JSON] = []
    for db, (_, versions, _, _) in ADDON_VERSIONS.items():
        for version in versions:
            backup, restore = f"{db}-backup-{version}", f"{db}-restore-{version}"
            out.append(
                {
                    "apiVersion": "stash.appscode.com/v1beta1",
                    "kind": "Task",
                    "metadata": _meta(backup, db, version),
                    "spec": {
                        "steps": [
                            {"name": backup, "params": [out_dir]},
                            {"name": "update-status", "params": [out_dir]},
                        ]
                    },
                }
            )
            out.append(
                {
                    "apiVersion": "stash.appscode.com/v1beta1",
                    "kind": "Task",
                    "metadata": _meta(restore, db, version),
                    "spec": {"steps": [{"name": restore, "params": [out_dir]}]},
                }
            )
    return out
