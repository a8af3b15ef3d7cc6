"""A pipe (`restic dump | load tool`) stopped by cancellation, as when the agent gets
SIGTERM, takes both processes down and reaps them before the event loop closes: the agent
ends without "Event loop is closed" or a loop "that handles pid ... is closed"."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from stash_dev.leaks import leak_lines

_AGENT = textwrap.dedent(
    """
    import asyncio, gc, os, sys, time
    from stash.restic.pipe import pipe_into

    async def main(how):
        env = dict(os.environ)
        # A grandchild in a session of its own keeps the producer's stderr open for a
        # second after the group is killed: the pipe surely ends after the cancellation
        # (without it, whether the loop closes first is a race).
        producer = ["sh", "-c", "(setsid sleep 1 &); sleep 30"]
        piping = asyncio.ensure_future(
            pipe_into(producer, env, ["sh", "-c", "cat >/dev/null"], env)
        )
        await asyncio.sleep(0.5)
        if how == "cancelled":
            piping.cancel()
            await asyncio.gather(piping, return_exceptions=True)
        # else: asyncio.run cancels it on the way out, as run_until_signalled's end does

    asyncio.run(main(sys.argv[1]))
    time.sleep(1.5)  # the processes are gone; what is left of them is collected now
    gc.collect()
    """
)


@pytest.mark.parametrize("how", ["cancelled", "left to asyncio.run"])
def test_a_cancelled_pipe_leaves_nothing_for_a_closed_loop(how: str) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", _AGENT, how.split()[0]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert leak_lines(done.stderr) == [], done.stderr
    assert "is closed" not in done.stderr, done.stderr
    assert "unclosed transport" not in done.stderr, done.stderr
