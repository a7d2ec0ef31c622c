"""The local policy file: read at start, offered again only when IT replaced it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.local_state import LocalState
from agent.policy_source import CHECK_INTERVAL_S, PolicyFileSource, load_policy
from agent.trust import TrustHolder

from ._signed import DEVICE, TRUSTED, clock, signed, tampered


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


class Recorder(TrustHolder):
    """A real holder that also counts what it was offered."""

    offers: list[bytes]
    refusals: list[str]

    def offer_policy(self, data, now, origin):  # type: ignore[no-untyped-def]
        self.offers.append(data)
        return super().offer_policy(data, now, origin)

    def refuse_policy(self, exc, origin):  # type: ignore[no-untyped-def]
        self.refusals.append(type(exc).__name__)
        return super().refuse_policy(exc, origin)


def recorder(tmp_path: Path, at: Clock) -> Recorder:
    local = LocalState(tmp_path / "state")
    trust = Recorder(local.trust, local, TRUSTED, DEVICE, at)
    trust.offers, trust.refusals = [], []
    return trust


def replace(path: Path, data: bytes) -> None:
    """As device management does: a new file renamed over the old one."""
    staging = path.with_suffix(".tmp")
    staging.write_bytes(data)
    staging.replace(path)
    # A modification time the file system cannot confuse with the last one.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def at() -> Clock:
    return Clock(clock())


def test_the_file_is_offered_at_start_and_again_only_once_replaced(
    tmp_path: Path, at: Clock
) -> None:
    path = tmp_path / "p.signed.json"
    path.write_bytes(signed(1))
    trust = recorder(tmp_path, at)
    source = PolicyFileSource(path, trust, at)
    assert source.offer(at.now).changed
    at.now += CHECK_INTERVAL_S + 1
    assert source.check(at.now) is None  # not replaced: not read again
    assert len(trust.offers) == 1

    replace(path, signed(2))
    assert source.check(at.now) is None  # looked at once per interval, not at once
    at.now += CHECK_INTERVAL_S + 1
    offer = source.check(at.now)
    assert offer is not None
    assert offer.changed
    assert len(trust.offers) == 2
    policy = trust.in_force.policy
    assert policy is not None
    assert policy.version == 2


def test_a_replaced_file_that_is_refused_is_not_offered_again_until_replaced_again(
    tmp_path: Path, at: Clock
) -> None:
    path = tmp_path / "p.signed.json"
    path.write_bytes(signed(1))
    trust = recorder(tmp_path, at)
    source = PolicyFileSource(path, trust, at)
    source.offer(at.now)
    trust.load(at.now)
    replace(path, tampered(2))
    at.now += CHECK_INTERVAL_S + 1
    offer = source.check(at.now)
    assert offer is not None
    assert offer.problem is not None
    assert "bad signature" in offer.problem
    at.now += CHECK_INTERVAL_S + 1
    assert source.check(at.now) is None
    assert len(trust.offers) == 2


def test_a_missing_file_is_refused_as_unreadable(tmp_path: Path, at: Clock) -> None:
    trust = recorder(tmp_path, at)
    offer = PolicyFileSource(tmp_path / "absent.json", trust, at).offer(at.now)
    assert trust.refusals == ["UnreadableFileError"]
    assert offer.problem is not None
    assert offer.problem.startswith("policy file absent.json rejected (unreadable file)")


def test_the_watcher_offers_a_replaced_file_on_its_own_thread(tmp_path: Path, at: Clock) -> None:
    path = tmp_path / "p.signed.json"
    path.write_bytes(signed(1))
    trust = recorder(tmp_path, at)
    source = PolicyFileSource(path, trust, at)
    source.offer(at.now)
    source.start()
    try:
        replace(path, signed(2))
        at.now += CHECK_INTERVAL_S + 1
        deadline = time.monotonic() + 5
        while len(trust.offers) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        source.stop()
    assert len(trust.offers) == 2


def test_load_policy_takes_a_good_file_and_stores_it(tmp_path: Path) -> None:
    path = tmp_path / "p.signed.json"
    path.write_bytes(signed(4))
    store = LocalState(tmp_path / "state").trust
    loaded = load_policy(store, TRUSTED, DEVICE, clock(), path)
    assert loaded.policy is not None
    assert loaded.policy.version == 4
    assert loaded.problem is None
    stored = store.load()
    assert stored is not None
    assert stored.state.version == 4


def test_load_policy_falls_back_to_the_last_good_policy_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "p.signed.json"
    path.write_bytes(signed(4))
    store = LocalState(tmp_path / "state").trust
    load_policy(store, TRUSTED, DEVICE, clock(), path)
    path.write_bytes(tampered(5))
    loaded = load_policy(store, TRUSTED, DEVICE, clock(), path)
    assert loaded.policy is not None
    assert loaded.policy.version == 4
    assert loaded.problem is not None
    assert loaded.problem.startswith("policy file p.signed.json rejected (bad signature)")
