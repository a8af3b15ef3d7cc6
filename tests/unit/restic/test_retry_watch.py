"""When restic's own backend retries are cut short (they last up to 15 minutes)."""

from __future__ import annotations

from stash.restic.errors import (
    BackendAuthFailed,
    BackendUnreachable,
    BucketNotFound,
    InvalidBackend,
)
from stash.restic.process import RetryWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


REFUSED = (
    'Stat(<config/>) returned error, retrying after 1.4s: Stat: Get "http://h/b/?location=": '
    "dial tcp 127.0.0.1:1: connect: connection refused"
)


def test_missing_bucket_stops_at_first_retry() -> None:
    watch = RetryWatch(budget=600)
    error = watch.feed(
        "Stat(<config/>) returned error, retrying after 814ms: "
        "Stat: The specified bucket does not exist"
    )
    assert isinstance(error, BucketNotFound)


def test_refused_credentials_stop_at_first_retry() -> None:
    error = RetryWatch(budget=600).feed(
        "Load(<key/abc>) returned error, retrying after 1s: Access Denied"
    )
    assert isinstance(error, BackendAuthFailed)


def test_unreachable_while_opening_stops_after_budget() -> None:
    clock = Clock()
    watch = RetryWatch(budget=30, clock=clock)
    assert watch.feed(REFUSED) is None
    clock.now = 29
    assert watch.feed(REFUSED) is None
    clock.now = 31
    error = watch.feed(REFUSED)
    assert isinstance(error, BackendUnreachable)
    assert "after 31s" in error.message


def test_unreachable_during_upload_is_left_to_restic() -> None:
    clock = Clock()
    watch = RetryWatch(budget=1, clock=clock)
    line = REFUSED.replace("Stat(<config/>)", "Save(<data/ab12>)")
    assert watch.feed(line) is None
    clock.now = 1000
    assert watch.feed(line) is None


def test_no_budget_and_other_lines() -> None:
    clock = Clock()
    watch = RetryWatch(budget=None, clock=clock)
    assert watch.feed(REFUSED) is None
    clock.now = 10_000
    assert watch.feed(REFUSED) is None
    assert watch.feed("Fatal: something else") is None


def test_invalid_bucket_name_stops_at_first_retry() -> None:
    error = RetryWatch(budget=600).feed(
        "Stat(<config/>) returned error, retrying after 636ms: client.GetObject: "
        "Bucket name cannot be shorter than 3 characters"
    )
    assert isinstance(error, InvalidBackend)


def test_any_error_while_opening_is_bounded_by_the_budget() -> None:
    clock = Clock()
    watch = RetryWatch(budget=5, clock=clock)
    line = "Stat(<config/>) returned error, retrying after 1s: Stat: something odd"
    assert watch.feed(line) is None
    clock.now = 6
    error = watch.feed(line)
    assert error is not None and "something odd" in error.message
