"""SessionStore: idle and absolute expiry, sign-out, anonymous cap — on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.web.sessions import SessionStore

START = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> SessionStore:
    return SessionStore(
        clock,
        idle=timedelta(minutes=30),
        absolute=timedelta(hours=12),
        anonymous_idle=timedelta(minutes=15),
        max_anonymous=3,
    )


def test_a_new_session_has_fresh_random_secrets(store: SessionStore) -> None:
    a, b = store.start("alice"), store.start("alice")
    assert a.session_id != b.session_id
    assert a.csrf_token != b.csrf_token
    assert a.csrf_token != a.session_id
    assert len(a.session_id) >= 43  # 32 random bytes


def test_get_returns_the_session_and_restarts_its_idle_timer(
    store: SessionStore, clock: FakeClock
) -> None:
    session = store.start("alice")
    for _ in range(5):
        clock.advance(minutes=29)
        found = store.get(session.session_id)
        assert found is not None
        assert found.admin == "alice"


def test_a_session_unused_for_the_idle_time_is_over(store: SessionStore, clock: FakeClock) -> None:
    session = store.start("alice")
    clock.advance(minutes=30)
    assert store.get(session.session_id) is None
    clock.advance(minutes=-10)  # even if the clock steps back, it stays over
    assert store.get(session.session_id) is None


def test_a_busy_session_ends_at_the_absolute_limit(store: SessionStore, clock: FakeClock) -> None:
    session = store.start("alice")
    for _ in range(12 * 2 - 1):
        clock.advance(minutes=30, seconds=-1)
        assert store.get(session.session_id) is not None
    clock.advance(hours=1)
    assert store.get(session.session_id) is None


def test_end_invalidates_the_session_server_side(store: SessionStore) -> None:
    session = store.start("alice")
    assert store.end(session.session_id) is True
    assert store.get(session.session_id) is None
    assert store.end(session.session_id) is False


@pytest.mark.parametrize("cookie", [None, "", "x" * 129, "not-a-session"])
def test_unknown_or_malformed_ids_find_nothing(store: SessionStore, cookie: str | None) -> None:
    store.start("alice")
    assert store.get(cookie) is None


def test_anonymous_sessions_are_capped_oldest_first(store: SessionStore) -> None:
    admin = store.start("alice")
    anonymous = [store.start(None) for _ in range(5)]
    assert [store.get(s.session_id) is not None for s in anonymous] == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert store.get(admin.session_id) is not None  # the cap never drops signed-in sessions


def test_anonymous_sessions_expire_sooner(store: SessionStore, clock: FakeClock) -> None:
    anonymous = store.start(None)
    clock.advance(minutes=15)
    assert store.get(anonymous.session_id) is None


def test_expired_sessions_are_purged_when_new_ones_start(
    store: SessionStore, clock: FakeClock
) -> None:
    for _ in range(3):
        store.start("alice")
    clock.advance(hours=1)
    store.start("bob")
    assert len(store) == 1


def test_flash_and_reveal_are_shown_once(store: SessionStore) -> None:
    session = store.start("alice")
    session.flash.append(("info", "done"))
    session.reveal = {"token": "secret"}
    assert session.pop_flash() == [("info", "done")]
    assert session.pop_flash() == []
    assert session.pop_reveal() == {"token": "secret"}
    assert session.pop_reveal() is None
