"""PauseState: length limits, replacement, automatic and early resume."""

from __future__ import annotations

import math

import pytest

from agent.pipeline.pause import RUNNING, PauseState

T0 = 1_800_000_000.0
MIN = 60.0


def test_not_paused_by_default() -> None:
    assert not RUNNING.is_paused(T0)
    assert RUNNING.resumes_at is None
    assert RUNNING.remaining_seconds(T0) == 0.0


def test_pause_expires_exactly_at_its_end() -> None:
    state = RUNNING.pause(T0, 10)
    assert state.resumes_at == T0 + 10 * MIN
    assert state.is_paused(T0)
    assert state.is_paused(T0 + 10 * MIN - 0.001)
    assert not state.is_paused(T0 + 10 * MIN)


def test_pause_without_length_lasts_the_maximum() -> None:
    assert RUNNING.pause(T0, max_minutes=45).resumes_at == T0 + 45 * MIN


def test_pause_longer_than_max_is_clamped() -> None:
    state = RUNNING.pause(T0, 600, max_minutes=30)
    assert state.resumes_at == T0 + 30 * MIN


def test_second_pause_cannot_exceed_the_maximum_from_now() -> None:
    first = RUNNING.pause(T0, 30, max_minutes=30)
    second = first.pause(T0 + 20 * MIN, 30, max_minutes=30)
    assert second.resumes_at == T0 + 50 * MIN  # 30 minutes from the second click
    third = second.pause(T0 + 21 * MIN, 1000, max_minutes=30)
    assert third.resumes_at == T0 + 51 * MIN


def test_second_pause_replaces_the_remaining_time() -> None:
    first = RUNNING.pause(T0, 30)
    shorter = first.pause(T0 + MIN, 5)
    assert shorter.resumes_at == T0 + 6 * MIN


def test_second_pause_keeps_when_the_pause_started() -> None:
    first = RUNNING.pause(T0, 30)
    assert first.pause(T0 + MIN, 5).started_at == T0
    after_expiry = first.pause(T0 + 31 * MIN, 5)
    assert after_expiry.started_at == T0 + 31 * MIN


def test_resume_ends_the_pause_now() -> None:
    state = RUNNING.pause(T0, 30).resume()
    assert not state.is_paused(T0)
    assert state == RUNNING


def test_remaining_seconds_counts_down_to_zero() -> None:
    state = RUNNING.pause(T0, 2)
    assert state.remaining_seconds(T0 + 30) == 90.0
    assert state.remaining_seconds(T0 + 500) == 0.0


@pytest.mark.parametrize("minutes", [0, -5, math.nan, math.inf])
def test_pause_of_no_positive_finite_length_is_rejected(minutes: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        RUNNING.pause(T0, minutes)


def test_pause_state_is_immutable() -> None:
    state = PauseState()
    with pytest.raises(AttributeError):
        state.resumes_at = T0  # type: ignore[misc]
