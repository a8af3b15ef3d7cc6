"""An operator that cannot start says why in one line and exits 1: no traceback for a
kubeconfig that does not load or an apiserver that does not answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: not-a-secret-worth-keeping}}
contexts:
- name: x
  context: {{cluster: c, user: u}}
current-context: x
"""

RUN = "import sys; from stash.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _operator(kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "STASH_"))}
    return subprocess.run(
        [
            *(sys.executable, "-c", RUN, "operator", "--kubeconfig", str(kubeconfig)),
            *("--no-webhook", "--metrics-port", "0", "--log-format", "text"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_an_apiserver_that_does_not_answer_is_named_and_the_exit_is_1(tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        config = tmp_path / "kubeconfig"
        config.write_text(KUBECONFIG.format(port=port))
        done = _operator(config)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"https://127.0.0.1:{port}" in done.stderr and str(config) in done.stderr
    assert "not-a-secret-worth-keeping" not in done.stderr


def test_a_kubeconfig_that_does_not_load_is_named_and_the_exit_is_1(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "kubeconfig"
    done = _operator(missing)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"cannot load {missing}" in done.stderr
