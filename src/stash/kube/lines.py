"""Splitting a byte stream into lines: the one reader for newline-delimited streams.

What it is for: `read_lines(stream)` yields the lines of anything with an async
`read(n)` (aiohttp's response content, asyncio's subprocess pipes): the apiserver's watch
stream, restic's stdout and stderr, the dev kubelet's watch. Lines are split here rather
than by aiohttp's `readline`, whose buffer limit (64 KiB by default, 2 MiB as
kubernetes_asyncio configures it) is smaller than one watch event can be: the apiserver
stores objects up to etcd's 1.5 MiB request limit, and a watch event wraps one in JSON.
The limit is generous but finite, so a stream that never sends a newline cannot take
the process's memory: past it a line is refused (a watch event) or cut (restic output).

Not for: decoding (callers parse JSON or text) or retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

__all__ = ["MAX_LINE", "ByteStream", "LineTooLong", "read_lines"]

#: The longest line accepted (bytes, without the newline): well above one watch event.
MAX_LINE = 16 << 20
_CHUNK = 1 << 16


class ByteStream(Protocol):
    """Anything with an async `read(n)` that returns b"" at the end."""

    async def read(self, n: int = -1, /) -> bytes:
        """Up to `n` bytes; b"" at the end of the stream."""
        ...


class LineTooLong(ValueError):
    """A line longer than the reader's limit (the stream is not read any further)."""


async def read_lines(
    stream: ByteStream, *, limit: int = MAX_LINE, cut: bool = False, chunk: int = _CHUNK
) -> AsyncIterator[bytes]:
    """Each line of `stream` without its newline; a last line without one is yielded too.

    Once more than `limit` bytes arrive without a newline, the reader raises
    `LineTooLong`, or with `cut` yields them in pieces of `limit` bytes (for output
    that is only logged or scanned, where a cut line is better than a failed run).
    """
    pending = bytearray()
    scanned = 0  # bytes of `pending` known to hold no newline
    while data := await stream.read(chunk):
        pending += data
        start = 0
        while (nl := pending.find(b"\n", max(start, scanned))) >= 0:
            yield bytes(pending[start:nl])
            start = nl + 1
        del pending[:start]
        while len(pending) > limit:
            if not cut:
                raise LineTooLong(f"a line longer than {limit} bytes (no newline yet)")
            yield bytes(pending[:limit])
            del pending[:limit]
        scanned = len(pending)
    if pending:
        yield bytes(pending)
