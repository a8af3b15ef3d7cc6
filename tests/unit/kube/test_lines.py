"""The one line reader: lines split across reads, a last line without a newline, and a
bounded line length."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stash.kube.lines import LineTooLong, read_lines


def _stream(*chunks: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return reader


async def _lines(stream: asyncio.StreamReader, **kw: Any) -> list[bytes]:
    return [line async for line in read_lines(stream, **kw)]


async def test_lines_split_across_reads_and_the_last_one_without_a_newline() -> None:
    stream = _stream(b'{"a":', b' 1}\n\n{"b": 2}\n{"c"', b": 3}")
    assert await _lines(stream, chunk=4) == [b'{"a": 1}', b"", b'{"b": 2}', b'{"c": 3}']


async def test_a_large_line_within_the_limit_is_one_line() -> None:
    big = b"x" * (3 << 20)  # larger than aiohttp's readline buffer as kubernetes_asyncio sets it
    assert await _lines(_stream(big + b"\nend\n")) == [big, b"end"]


async def test_a_line_over_the_limit_is_refused() -> None:
    with pytest.raises(LineTooLong):
        await _lines(_stream(b"y" * 100, b"\n"), limit=50, chunk=10)


async def test_an_overlong_line_can_be_cut_into_pieces_instead() -> None:
    pieces = await _lines(_stream(b"z" * 125, b"\nok"), limit=50, chunk=10, cut=True)
    assert pieces == [b"z" * 50, b"z" * 50, b"z" * 25, b"ok"]
