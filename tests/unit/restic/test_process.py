"""restic's output is read in bounded pieces: no line or buffer grows without limit."""

from __future__ import annotations

import os
import sys

import pytest

from stash.restic import process
from stash.restic.errors import ResticError
from stash.restic.process import MAX_LINE, run


async def test_a_line_without_end_reaches_the_handler_in_bounded_pieces() -> None:
    lengths: list[int] = []
    code = "import sys; sys.stdout.write('x' * (9 << 20)); sys.stdout.flush()"
    done = await run(
        [sys.executable, "-c", code], dict(os.environ), on_line=lambda b: lengths.append(len(b))
    )
    assert done.exit_code == 0
    assert sum(lengths) == 9 << 20
    assert max(lengths) <= MAX_LINE


async def test_stdout_past_the_cap_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "MAX_STDOUT", 1 << 20)
    code = "import sys\nfor _ in range(64): sys.stdout.write('y' * 65536 + '\\n')"
    with pytest.raises(ResticError, match="more than 1 MiB"):
        await run([sys.executable, "-c", code], dict(os.environ), grace=1.0)
