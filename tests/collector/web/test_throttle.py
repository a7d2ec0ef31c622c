"""SignInThrottle: free failures, then doubling waits per (name, address)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.web.errors import SignInThrottledError
from collector.web.throttle import SignInThrottle


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> SignInThrottle:
    return SignInThrottle(
        clock,
        free_failures=3,
        base_delay=timedelta(seconds=2),
        max_delay=timedelta(seconds=60),
        max_keys=4,
    )


def wait_of(throttle: SignInThrottle, name: str = "alice", address: str = "10.0.0.1") -> int:
    try:
        throttle.check(name, address)
    except SignInThrottledError as exc:
        return exc.retry_after
    return 0


def test_exactly_the_configured_number_of_guesses_is_free(throttle: SignInThrottle) -> None:
    for _ in range(3):  # free_failures=3: three attempts, none of them waits
        assert wait_of(throttle) == 0
        throttle.failed("alice", "10.0.0.1")
    assert wait_of(throttle) == 2  # the fourth must wait


def test_each_further_failure_doubles_the_wait_up_to_the_maximum(
    throttle: SignInThrottle, clock: FakeClock
) -> None:
    waits = []
    for _ in range(9):
        throttle.failed("alice", "10.0.0.1")
        waits.append(wait_of(throttle))
    assert waits == [0, 0, 2, 4, 8, 16, 32, 60, 60]


def test_the_wait_passes_with_time(throttle: SignInThrottle, clock: FakeClock) -> None:
    for _ in range(4):
        throttle.failed("alice", "10.0.0.1")
    assert wait_of(throttle) == 4
    clock.now += timedelta(seconds=4)
    assert wait_of(throttle) == 0


def test_keys_are_per_name_and_address_and_names_ignore_case(throttle: SignInThrottle) -> None:
    for _ in range(3):
        throttle.failed("Alice", "10.0.0.1")
    assert wait_of(throttle, "alice", "10.0.0.1") == 2
    assert wait_of(throttle, "alice", "10.0.0.2") == 0
    assert wait_of(throttle, "bob", "10.0.0.1") == 0


def test_success_clears_the_count(throttle: SignInThrottle) -> None:
    for _ in range(4):
        throttle.failed("alice", "10.0.0.1")
    throttle.succeeded("alice", "10.0.0.1")
    throttle.failed("alice", "10.0.0.1")
    assert wait_of(throttle) == 0


def test_memory_is_bounded_oldest_key_first(throttle: SignInThrottle) -> None:
    for _ in range(4):
        throttle.failed("alice", "10.0.0.1")
    for i in range(4):
        throttle.failed(f"made-up-{i}", "10.0.0.9")
    assert wait_of(throttle) == 0  # alice's entry was the oldest, dropped
