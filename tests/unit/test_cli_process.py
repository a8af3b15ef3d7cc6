"""A `stash` process ends on SIGTERM/SIGINT: its coroutine is cancelled and cleans up,
and a coroutine that will not finish cannot keep the process alive."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from stash.cli.main import build_parser

_PROGRAM = """
import asyncio, sys
from stash.cli.process import run_until_signalled
from stash.logs import configure

configure("INFO", "text")

async def main():
    print("ready", flush=True)
    try:
        await asyncio.sleep(3600)
    finally:
        print("cleaned up", flush=True)
        if sys.argv[1] == "stubborn":
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass

sys.exit(run_until_signalled(main, signalled_exit=143, grace=float(sys.argv[2])))
"""


def _start(mode: str, grace: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROGRAM, mode, str(grace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cancels_the_command_which_cleans_up(sig: signal.Signals) -> None:
    proc = _start("polite", 60)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "cleaned up" in output and f"{sig.name} received" in output


def test_a_command_that_does_not_finish_is_abandoned_after_the_grace_period() -> None:
    proc = _start("stubborn", 0.5)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "shutdown took longer than" in output


def test_a_second_signal_ends_the_wait_at_once() -> None:
    proc = _start("stubborn", 3600)
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    for line in proc.stdout:  # the first signal reached the coroutine
        if "cleaned up" in line:
            break
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "SIGTERM again while shutting down" in output


@pytest.mark.parametrize(
    "argv",
    [
        ["operator"],
        ["webhook"],
        ["run-backup", "--invoker-name=bc", "--target-kind=Deployment", "--target-name=web"],
        ["agent", "restore", "--invoker-name=rs", "--target-kind=Deployment", "--target-name=w"],
        ["backup-pvc"],
        ["update-status"],
        ["restore-pvc"],
    ],
)
def test_long_running_commands_take_the_log_flags(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--log-format=json", "--log-level=DEBUG"])
    assert (args.log_format, args.log_level) == ("json", "DEBUG")
