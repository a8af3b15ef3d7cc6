"""The job-step contract: Function args parse back into the same values; output.json."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stash.agent.steps import BackupOutput
from stash.api.backupsession import HostBackupStats
from stash.api.common import TargetRef
from stash.cli.main import build_parser
from stash.contract.steps import (
    pvc_backup_args,
    pvc_restore_args,
    split_list,
    update_status_args,
)

VARIABLE = re.compile(r"\$\{([A-Za-z_]+)(?::=([^}]*))?\}")


def envsubst(args: list[str], env: dict[str, str]) -> list[str]:
    """What the operator does to a Function's args (§5.5): ${VAR} / ${VAR:=default}."""
    return [VARIABLE.sub(lambda m: env.get(m[1], m[2] or ""), a) for a in args]


@pytest.mark.parametrize("render", [pvc_backup_args, update_status_args, pvc_restore_args])
def test_every_rendered_flag_is_one_the_cli_parses(render) -> None:  # type: ignore[no-untyped-def]
    argv = envsubst(
        render(),
        {
            "NAMESPACE": "demo",
            "BACKUP_SESSION": "bc-1",
            "RESTORE_SESSION": "rs",
            "TARGET_PATHS": "/a,/b",
        },
    )
    args = build_parser().parse_args(argv)
    assert args.namespace == "demo"


def test_backup_step_args_carry_the_session_values() -> None:
    argv = envsubst(
        pvc_backup_args({"hostname": "host-3"}),
        {
            "NAMESPACE": "demo",
            "BACKUP_SESSION": "bc-1",
            "TARGET_PATHS": "/a,/b",
            "EXCLUDE_PATTERNS": "*.tmp",
            "INVOKER_NAME": "bc",
            "TARGET_NAME": "data",
        },
    )
    args = build_parser().parse_args(argv)
    assert args.backupsession == "bc-1"
    assert split_list(args.backup_paths) == ("/a", "/b")
    assert split_list(args.exclude) == ("*.tmp",)
    assert args.hostname == "host-3"
    assert args.output_dir == "/stash-tmp/output"
    assert args.target_name == "data"


def test_unknown_flag_values_are_refused() -> None:
    with pytest.raises(ValueError, match="no-such"):
        pvc_backup_args({"no-such": "x"})


def test_agent_group_aliases_parse_like_the_top_level_commands() -> None:
    flags = ["--invoker-name=bc", "--target-kind=Deployment", "--target-name=web"]
    top = build_parser().parse_args(["run-backup", *flags])
    alias = build_parser().parse_args(["agent", "sidecar", *flags])
    assert top.handler is alias.handler and top.target_name == alias.target_name == "web"


def test_output_json_round_trips(tmp_path: Path) -> None:
    out = BackupOutput(
        target=TargetRef(api_version="v1", kind="PersistentVolumeClaim", name="data"),
        host_backup_stats=HostBackupStats(hostname="host-0", phase="Failed", error="no space"),
    )
    path = out.write(tmp_path / "output")
    assert path.name == "output.json"
    assert BackupOutput.read(tmp_path / "output") == out
    assert BackupOutput.read(tmp_path / "missing") is None
