"""kubectl-stash's pure parts: flags anywhere on the line, RestoreSession from flags,
snapshot names, ages, copies, tables, completion, one-line errors."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest

from stash.cli.kubectl import build_parser, main
from stash.cli.kubectl.invokers import next_fire_times
from stash.cli.kubectl.meta import completion_script
from stash.cli.kubectl.objects import copy_of, restore_session
from stash.cli.kubectl.plugin import PluginError, table
from stash.cli.kubectl.repository import parse_age, split_snapshot_name
from stash.cron import parse_schedule


def test_kubectl_flags_go_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["-n", "ns", "--context", "c", "snapshots", "repo"])
    after = parser.parse_args(["snapshots", "repo", "-n", "ns", "--context=c", "-o", "json"])
    for args in (before, after):
        assert (args.namespace, args.context, args.repository) == ("ns", "c", "repo")
    assert parser.parse_args(["key", "list", "repo", "-n", "x"]).namespace == "x"


def test_restore_session_from_flags() -> None:
    args = build_parser().parse_args(
        [
            "restore",
            "rs",
            "--repository=r",
            "--target=pvc/data",
            "--paths=/a,/b",
            "--task=pvc-restore",
        ]
    )
    body = restore_session(args, "ns")
    assert body["metadata"] == {"name": "rs", "namespace": "ns"}
    target = body["spec"]["target"]
    assert target["ref"] == {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data"}
    assert target["rules"] == [{"paths": ["/a", "/b"]}]
    assert body["spec"]["task"] == {"name": "pvc-restore"}
    bad = build_parser().parse_args(["restore", "rs", "--repository=r", "--target=web"])
    with pytest.raises(PluginError, match="KIND/NAME"):
        restore_session(bad, "ns")


def test_snapshot_names_and_ages() -> None:
    assert split_snapshot_name("my-repo-0123abcd") == ("my-repo", "0123abcd")
    with pytest.raises(PluginError, match="first 8 characters"):
        split_snapshot_name("repo-xyz")
    assert parse_age("1h30m") == dt.timedelta(minutes=90)
    assert parse_age("0s") == dt.timedelta(0)
    with pytest.raises(PluginError, match="duration"):
        parse_age("ten minutes")


def test_a_copy_keeps_what_its_author_wrote() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "s",
            "namespace": "a",
            "uid": "u",
            "resourceVersion": "9",
            "labels": {"team": "x"},
            "finalizers": ["f"],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "data": {"k": "dg=="},
        "status": {"x": 1},
    }
    assert copy_of(obj, "b") == {
        "apiVersion": "v1",
        "kind": "Secret",
        "data": {"k": "dg=="},
        "metadata": {"name": "s", "namespace": "b", "labels": {"team": "x"}},
    }


def test_table_and_next_fire_times() -> None:
    assert table(["name", "paths"], [["a", ["/x", "/y"]], ["bb", None]]).splitlines() == [
        "NAME   PATHS",
        "a      /x,/y",
        "bb     <none>",
    ]
    schedule = parse_schedule("CRON_TZ=Asia/Tokyo 30 4 * * *")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    times = next_fire_times(schedule, now)
    assert [t.astimezone(schedule.tz).strftime("%m-%d %H:%M") for t in times] == [
        "01-02 04:30", "01-03 04:30", "01-04 04:30",
    ]  # fmt: skip


def test_completion_scripts_parse_and_know_the_commands() -> None:
    script = completion_script(build_parser(), "bash")
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    assert '"key"|"key "*) opts="list add update remove' in script
    assert "snapshots" in script and "--dry-run" in script


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pause", "backup"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["--kubeconfig=/nonexistent", "snapshots", "repo"]) == 1
    assert (
        capsys.readouterr().err.strip() == "kubectl-stash: --kubeconfig /nonexistent: no such file"
    )


def test_the_job_runs_the_same_command_next_to_the_volume() -> None:
    from stash.cli.kubectl.plugin import Plugin
    from stash.cli.kubectl.podjob import inner_argv, job_manifest

    argv = ["-n", "ns", "unlock", "repo", "--kubeconfig=/k", "--context", "c", "--min-age=0s",
            "--image", "reg/stash:1", "--job-env=A=b", "--job-timeout", "60"]  # fmt: skip
    assert inner_argv(argv) == ["unlock", "repo", "--min-age=0s"]
    args = build_parser().parse_args(argv)
    repo = {
        "spec": {
            "backend": {
                "storageSecretName": "creds",
                "local": {"mountPath": "/repo", "subPath": "a", "hostPath": {"path": "/srv"}},
            }
        }
    }
    job = job_manifest(Plugin(None, "ns", args), repo, inner_argv(argv))  # type: ignore[arg-type]
    pod = job["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["image"] == "reg/stash:1" and c["command"] == ["kubectl-stash"]
    assert c["args"] == ["unlock", "repo", "--min-age=0s", "--local-repository=/repo"]
    assert c["volumeMounts"] == [{"name": "stash-local", "mountPath": "/repo", "subPath": "a"}]
    assert pod["volumes"] == [{"name": "stash-local", "hostPath": {"path": "/srv"}}]
    assert c["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "creds", "key": "RESTIC_PASSWORD"}
    assert c["env"][1] == {"name": "A", "value": "b"}
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == 60
