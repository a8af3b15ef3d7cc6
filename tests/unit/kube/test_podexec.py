"""The exec transport's reading of remote-command statuses and its output bound, and the
stand-in kubelet's side of the same protocol (what it writes is what the client reads)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stash.kube.podexec import PodExecError, _Tail, exit_code_of
from stash_dev.kubelet_exec import exit_status, negotiate, start_error_status
from stash_dev.podrunner.registry import ContainerRegistry


def test_exit_codes_round_trip_through_the_kubelets_status() -> None:
    assert exit_code_of(exit_status(0)) == 0
    assert exit_code_of(exit_status(3)) == 3
    assert exit_code_of(exit_status(137)) == 137


def test_a_command_that_never_started_is_an_error_with_the_kubelets_message() -> None:
    with pytest.raises(PodExecError, match='exec "x": executable file not found'):
        exit_code_of(start_error_status('exec "x": executable file not found in $PATH'))


def test_an_upstream_kubelet_status_is_read_the_same() -> None:
    # As kube-apiserver/kubelet 1.36 write it (metav1.Status marshalled to JSON).
    upstream = {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        "[sh -c exit 7], exit code 7",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "7"}]},
    }
    assert exit_code_of(upstream) == 7


def test_output_keeps_its_end_and_says_how_much_was_dropped() -> None:
    tail = _Tail(10)
    tail.add(b"0123456789")
    assert tail.text() == "0123456789"
    tail.add(b"abcde")
    assert tail.text() == "[5 bytes of output dropped]\n56789abcde"


def test_the_kubelet_prefers_v5_and_speaks_nothing_older_than_v4() -> None:
    assert negotiate("v5.channel.k8s.io, v4.channel.k8s.io") == "v5.channel.k8s.io"
    assert negotiate("v4.channel.k8s.io") == "v4.channel.k8s.io"
    assert negotiate("channel.k8s.io, base64.channel.k8s.io") is None
    assert negotiate("") is None


def test_a_container_record_names_a_live_process_only(tmp_path: Path) -> None:
    registry = ContainerRegistry(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        registry.record("uid-1", "app", proc.pid)
        found = registry.find("uid-1", "app")
        assert found is not None and found.pid == proc.pid
        assert registry.find("uid-1", "other") is None
        assert registry.find("uid-2", "app") is None
    finally:
        proc.kill()
        proc.wait()
    assert registry.find("uid-1", "app") is None, "the process ended"
    registry.forget("uid-1", "app", proc.pid)
    assert not (tmp_path / "uid-1").exists()


def test_a_record_of_a_reused_pid_is_not_the_container(tmp_path: Path) -> None:
    registry = ContainerRegistry(tmp_path)
    record = tmp_path / "uid-1" / "app.json"
    record.parent.mkdir()
    # Our own pid, but a start time it never had: the recorded process is gone.
    record.write_text(f'{{"pid": {os.getpid()}, "started": 1}}')
    assert registry.find("uid-1", "app") is None
