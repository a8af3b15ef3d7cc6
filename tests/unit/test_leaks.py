"""stash_dev.leaks: a bench or the demo sees the leak reports of its own process (an
aiohttp session or an asyncio task left open) and of the processes it started (their logs
or their stderr), and fails on them; a clean run passes."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import aiohttp

from stash_dev.leaks import LeakWatch, leak_lines


def _leave_open() -> None:
    """A loop that ends with a client session and a task still open, then is closed."""

    async def forever() -> None:
        await asyncio.sleep(3600)

    async def main() -> list[object]:
        return [aiohttp.ClientSession(), asyncio.get_running_loop().create_task(forever())]

    loop = asyncio.new_event_loop()
    try:
        left = loop.run_until_complete(main())
    finally:
        loop.close()
    del left


def _close_everything() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession():
            await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_a_session_and_a_task_left_open_in_this_process_fail_the_run() -> None:
    with LeakWatch() as watch:
        _leave_open()
    out = io.StringIO()
    assert watch.verdict(out) == 1
    report = out.getvalue()
    assert "Unclosed client session" in report
    assert "Task was destroyed but it is pending" in report


def test_a_clean_run_passes_and_says_so() -> None:
    with LeakWatch() as watch:
        _close_everything()
    out = io.StringIO()
    assert watch.verdict(out) == 0
    assert out.getvalue() == "leak_reports: 0\n"


def test_container_logs_under_a_work_directory_are_read(tmp_path: Path) -> None:
    pod = tmp_path / "pods" / "bench_web-1_uid"
    pod.mkdir(parents=True)
    (pod / "stash.log").write_text("backed up\nUnclosed connector\nconnections: [...]\n")
    (pod / "app.log").write_text("all fine\n")
    watch = LeakWatch()
    watch.scan_logs("bench", tmp_path)
    assert watch.found == [("bench pods/bench_web-1_uid/stash.log", "Unclosed connector")]


def test_a_followed_child_is_still_shown_and_its_reports_count() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stderr.write('Event loop is closed\\n')"],
        stderr=subprocess.PIPE,
    )
    watch = LeakWatch()
    watch.follow("operator", child.stderr)
    child.wait()
    assert watch.verdict(io.StringIO()) == 1
    assert watch.found == [("operator", "Event loop is closed")]


def test_only_lines_with_a_marker_are_reports() -> None:
    text = "Task was destroyed but it is pending!\ntask: <Task pending>\nclient_session: x"
    assert leak_lines(text) == ["Task was destroyed but it is pending!"]
