"""A de-duplicating, rate-limited work queue of object keys (client-go's workqueue shape).

Guarantees: a key is never handed to two workers at once; a key added while it is being
processed is not lost (it is handed out again after `done`); a key queued many times
is processed once. Failures back off per key exponentially up to a cap, under an overall
token bucket. Time comes from an injectable clock so tests need not sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class ShutDown(Exception):
    """The queue was shut down; workers should exit."""


class TokenBucket:
    """An overall rate limit: `rate` tokens per second, up to `burst` saved up."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def reserve(self) -> float:
        """Take a token; return how long the caller must wait for it (0 when available)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


_MAX_EXPONENT = 64  # 2.0**64 * any sane base is far past any cap


class Backoff:
    """Per-key exponential backoff: base * 2**failures, capped.

    The exponent stops growing once the cap is reached, so a key that fails forever
    (thousands of times) never overflows a float and never kills its worker."""

    def __init__(self, base: float = 0.005, cap: float = 300.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[str, int] = {}

    def next_delay(self, key: str) -> float:
        """Record a failure of `key`; return the delay before its next attempt."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        return float(min(self.cap, self.base * 2.0 ** min(n, _MAX_EXPONENT)))

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)


class WorkQueue:
    """Keys to reconcile. `get()` waits for a key; call `done(key)` when finished with it."""

    def __init__(
        self,
        name: str,
        *,
        backoff: Backoff | None = None,
        bucket: TokenBucket | None = None,
    ) -> None:
        self.name = name
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiting: dict[str, asyncio.TimerHandle] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutdown = False
        self.backoff = backoff or Backoff()
        self.bucket = bucket or TokenBucket(rate=10.0, burst=100)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def depth(self) -> int:
        """Keys waiting to be handed out (not counting delayed or in-flight ones)."""
        return len(self._queue)

    def add(self, key: str) -> None:
        """Queue `key` now (no-op if already queued; deferred if being processed)."""
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._notify()

    def add_after(self, key: str, delay: float) -> None:
        """Queue `key` after `delay` seconds; an earlier pending request wins."""
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending.when() <= when:
                return
            pending.cancel()
        self._waiting[key] = loop.call_at(when, self._fire, key)

    def add_rate_limited(self, key: str) -> float:
        """Queue `key` after its backoff (and the overall rate limit); return the delay."""
        delay = max(self.backoff.next_delay(key), self.bucket.reserve())
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Reset `key`'s failure count after a success."""
        self.backoff.forget(key)

    async def get(self) -> str:
        """Wait for the next key and mark it in flight. Raises ShutDown."""
        while not self._queue:
            if self._shutdown:
                raise ShutDown(self.name)
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            finally:
                if fut in self._getters:
                    self._getters.remove(fut)
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        """Mark `key` finished; if it was re-added meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._notify()

    def shutdown(self) -> None:
        """Stop handing out keys; waiting `get()` calls raise ShutDown."""
        self._shutdown = True
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)

    def _fire(self, key: str) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def _notify(self) -> None:
        """Wake one waiting `get()`."""
        while self._getters:
            fut = self._getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
