"""Log lines name their object: the key a reconcile or an agent step sets reaches every
line, in text for a terminal and one JSON object per line otherwise."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from stash.kube.controller import DONE, Controller, Result
from stash.logs import configure, log_key, object_key, resolve_format


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _json_lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_carry_time_level_logger_message_key_and_exception(
    restore_root: None,
) -> None:
    out = io.StringIO()
    configure("INFO", "json", out)
    log = logging.getLogger("stash.test")
    with log_key(object_key("BackupSession", "demo", "nightly-1", "host-0")):
        log.info("backing up %s", "/data")
        try:
            raise RuntimeError("restic failed\nsecond line")
        except RuntimeError:
            log.exception("backup failed")
    log.debug("not at INFO")
    log.warning("outside any object")
    first, failed, outside = _json_lines(out)
    assert {k: first[k] for k in ("level", "logger", "message", "key")} == {
        "level": "INFO",
        "logger": "stash.test",
        "message": "backing up /data",
        "key": "backupsession/demo/nightly-1 host=host-0",
    }
    assert str(first["time"]).endswith("Z")
    assert "RuntimeError: restic failed" in str(failed["exception"])
    assert "key" not in outside and outside["level"] == "WARNING"


def test_text_lines_show_the_key_in_brackets(restore_root: None) -> None:
    out = io.StringIO()
    configure("INFO", "text", out)
    with log_key("repository/demo/repo"):
        logging.getLogger("stash.test").info("initialised")
    assert out.getvalue().rstrip().endswith("INFO stash.test [repository/demo/repo]: initialised")


def test_format_flag_then_environment_then_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STASH_LOG_FORMAT", raising=False)
    assert resolve_format(None, _Tty()) == "text"
    assert resolve_format(None, io.StringIO()) == "json"
    monkeypatch.setenv("STASH_LOG_FORMAT", "text")
    assert resolve_format(None, io.StringIO()) == "text"
    assert resolve_format("json", _Tty()) == "json"
    monkeypatch.setenv("STASH_LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="yaml"):
        resolve_format(None, _Tty())


async def test_every_line_of_a_reconcile_carries_its_key(restore_root: None) -> None:
    out = io.StringIO()
    configure("INFO", "json", out)
    done = asyncio.Event()

    class Noisy:
        name = "backupconfiguration"

        async def reconcile(self, key: str) -> Result:
            logging.getLogger("stash.controllers.test").info("looked at it")
            await asyncio.sleep(0)
            if key.endswith("bad"):
                done.set()
                raise RuntimeError("broken")
            return DONE

    ctrl = Controller(Noisy(), workers=1)
    ctrl.queue.add("demo/good")
    ctrl.queue.add("demo/bad")
    task = asyncio.create_task(ctrl.run())
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    keys = [(line["message"], line.get("key")) for line in _json_lines(out)]
    assert keys[:3] == [
        ("looked at it", "backupconfiguration/demo/good"),
        ("looked at it", "backupconfiguration/demo/bad"),
        (keys[2][0], "backupconfiguration/demo/bad"),
    ]
    assert "reconcile failed" in str(keys[2][0])
