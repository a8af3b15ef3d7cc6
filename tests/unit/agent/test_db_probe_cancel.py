"""The agent waiting for a database (its `SELECT 1` probe running) and stopped by
SIGTERM takes the probe down with it and reaps it before its event loop closes: no probe
outlives the agent, and it ends without "Event loop is closed" or an unclosed transport."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from stash_dev.leaks import leak_lines

_AGENT = textwrap.dedent(
    """
    import asyncio, gc, sys, time
    from types import SimpleNamespace
    from stash.agent.dbsteps import wait_for_database

    class Engine:
        def probe_argv(self, conn, tool, restoring=False):  # a probe still trying
            return ["sh", "-c", f"echo $$ > {sys.argv[1]}; exec sleep 30"], {}

    async def main():
        conn = SimpleNamespace(env={}, where="db:5432", username="u")
        step = SimpleNamespace(wait_timeout=300.0, appbinding="db", secret="s")
        waiting = asyncio.ensure_future(
            wait_for_database(Engine(), conn, "", step, lambda text: text)
        )
        await asyncio.sleep(1)  # then asyncio.run cancels it, as SIGTERM's end does

    asyncio.run(main())
    gc.collect()
    """
)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_stopped_agent_leaves_no_database_probe_behind(tmp_path: Path) -> None:
    pid_file = tmp_path / "probe.pid"
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", _AGENT, str(pid_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    probe = int(pid_file.read_text())
    try:
        assert done.returncode == 0, done.stderr
        assert not _running(probe), "the probe outlived the agent"
        assert leak_lines(done.stderr) == [], done.stderr
        assert "unclosed transport" not in done.stderr, done.stderr
    finally:
        if _running(probe):
            subprocess.run(["kill", "-9", str(probe)], check=False)
