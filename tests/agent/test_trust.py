"""The trust holder: policies and grants verified once, stored, handed on in memory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import agent.trust
import policies.store
from agent.local_state import LocalState, LocalStateError
from agent.trust import COLLECTOR, InForce, PolicyOrigin, TrustHolder
from policies.keys import generate_private_key
from policies.model import Category

from ._signed import (
    DEVICE,
    FILE,
    IT_KEY,
    NOW,
    TRUSTED,
    clock,
    grant,
    signed,
    stamp,
    tampered,
)


class Seen:
    """A subscriber: every value it was handed."""

    def __init__(self) -> None:
        self.values: list[InForce] = []

    def __call__(self, in_force: InForce) -> None:
        self.values.append(in_force)

    @property
    def versions(self) -> list[int | None]:
        return [None if v.policy is None else v.policy.version for v in self.values]


def holder(local: LocalState) -> TrustHolder:
    return TrustHolder(local.trust, local, TRUSTED, DEVICE, clock)


def store_files(directory: Path) -> dict[str, bytes]:
    trust = directory / "trust"
    return {p.name: p.read_bytes() for p in sorted(trust.glob("*"))} if trust.exists() else {}


@pytest.fixture
def local(tmp_path: Path) -> LocalState:
    return LocalState(tmp_path)


# ------------------------------------------------------------------ policies


def test_an_accepted_policy_is_stored_and_handed_to_subscribers_in_memory(
    local: LocalState,
) -> None:
    trust = holder(local)
    trust.load(clock())
    seen = Seen()
    trust.subscribe(seen)
    offer = trust.offer_policy(signed(2), clock(), COLLECTOR)
    assert offer.changed
    assert offer.problem is None
    assert seen.versions == [None, 2]  # what was in force at subscription, then the new one
    stored = local.trust.load()
    assert stored is not None
    assert stored.state.version == 2


def test_each_offer_is_verified_exactly_once(
    local: LocalState, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def counting(real: Callable[..., Any]) -> Callable[..., Any]:
        def verify(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return real(*args, **kwargs)

        return verify

    monkeypatch.setattr(policies.store, "verify_policy", counting(policies.store.verify_policy))
    monkeypatch.setattr(agent.trust, "verify_policy", counting(agent.trust.verify_policy))
    trust = holder(local)
    trust.offer_policy(signed(1), clock(), FILE)
    trust.load(clock())
    assert len(calls) == 1  # accepted from the file: the store is not verified again
    trust.subscribe(Seen())
    trust.offer_policy(signed(2), clock(), COLLECTOR)
    assert len(calls) == 2


def test_the_stored_policy_is_verified_at_load(local: LocalState) -> None:
    holder(local).offer_policy(signed(3), clock(), COLLECTOR)
    trust = holder(local)  # the next run
    in_force = trust.load(clock())
    assert in_force.policy is not None
    assert in_force.policy.version == 3
    assert in_force.problem is None


def test_with_nothing_stored_the_problem_says_no_policy_is_installed(local: LocalState) -> None:
    in_force = holder(local).load(clock())
    assert in_force.policy is None
    assert in_force.problem == "no policy has been installed"


def test_a_stored_policy_that_expired_is_not_put_in_force_and_says_why(
    local: LocalState,
) -> None:
    holder(local).offer_policy(signed(3), clock(), COLLECTOR)
    later = TrustHolder(local.trust, local, TRUSTED, DEVICE, clock)
    in_force = later.load(clock() + 8 * 86400)
    assert in_force.policy is None
    assert in_force.problem is not None
    assert "the last good policy cannot be used (expired)" in in_force.problem


def test_a_file_refused_at_start_leaves_the_last_good_policy_in_force_and_says_why(
    local: LocalState,
) -> None:
    holder(local).offer_policy(signed(3), clock(), COLLECTOR)
    trust = holder(local)
    offer = trust.offer_policy(signed(2), clock(), FILE)
    assert offer.problem is not None
    in_force = trust.load(clock())
    assert in_force.policy is not None
    assert in_force.policy.version == 3
    assert in_force.problem is not None
    assert in_force.problem.startswith("policy file p.signed.json rejected (rollback)")


REFUSED = {
    "tampered": (lambda: tampered(2), "bad signature"),
    "rollback": (lambda: signed(1), "rollback"),
    "version reused with other content": (
        lambda: signed(2, issued_at=stamp(NOW - timedelta(hours=2))),
        "same version, different content",
    ),
    "another tenant": (
        lambda: signed(3, scope={"tenant": "other", "device_groups": ["office"]}),
        "scope mismatch",
    ),
    "expired": (
        lambda: signed(3, expires=stamp(NOW - timedelta(minutes=1))),
        "expired",
    ),
    "untrusted key": (lambda: signed(3, key=generate_private_key()), "untrusted key"),
    "not a policy": (lambda: b"{}", "malformed"),
}


@pytest.mark.parametrize("origin", [FILE, COLLECTOR], ids=["file", "collector"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_policy_changes_neither_the_store_nor_what_is_in_force(
    local: LocalState, tmp_path: Path, case: str, origin: PolicyOrigin
) -> None:
    make, label = REFUSED[case]
    trust = holder(local)
    trust.offer_policy(signed(2), clock(), COLLECTOR)
    trust.load(clock())
    seen = Seen()
    trust.subscribe(seen)
    before, files = trust.in_force, store_files(tmp_path)

    offer = trust.offer_policy(make(), clock(), origin)

    assert not offer.changed
    assert offer.problem is not None
    assert f"({label})" in offer.problem
    assert store_files(tmp_path) == files
    assert trust.in_force.policy == before.policy
    if origin.shown:
        assert trust.in_force.problem == offer.problem
        assert seen.versions == [2, 2]  # told of the problem, same policy
    else:
        assert trust.in_force == before
        assert seen.versions == [2]


def test_a_good_file_after_a_refused_one_clears_the_problem(local: LocalState) -> None:
    trust = holder(local)
    trust.offer_policy(signed(1), clock(), FILE)
    trust.load(clock())
    trust.offer_policy(tampered(2), clock(), FILE)
    assert trust.in_force.problem is not None
    offer = trust.offer_policy(signed(1), clock(), FILE)  # the same policy as in force
    assert not offer.changed
    assert trust.in_force.problem is None


def test_an_unreadable_file_is_a_shown_problem(local: LocalState) -> None:
    from policies.errors import UnreadableFileError

    trust = holder(local)
    trust.refuse_policy(UnreadableFileError("cannot read p.signed.json"), FILE)
    in_force = trust.load(clock())
    assert in_force.problem is not None
    assert in_force.problem.startswith("policy file p.signed.json rejected (unreadable")
    assert "no policy has been installed" not in in_force.problem


# ------------------------------------------------------------------ grants


def test_only_grants_that_verify_are_handed_on_and_every_received_one_is_stored(
    local: LocalState,
) -> None:
    trust = holder(local)
    trust.offer_policy(signed(1), clock(), COLLECTOR)
    trust.load(clock())
    seen = Seen()
    trust.subscribe(seen)
    good = grant(local.device_id())
    received = [
        good,
        grant(local.device_id(), key=IT_KEY),  # not an admin key of the policy
        grant(local.device_id(), Category.SENSITIVE),  # a category the key may not grant
        grant("another-device"),
    ]
    assert trust.offer_grants(received, clock())
    assert [g.grant_id for g in trust.in_force.grants] == ["g-other"]
    assert seen.values[-1].grants == trust.in_force.grants
    assert local.grants() == received


def test_the_same_grant_list_again_changes_nothing(local: LocalState) -> None:
    trust = holder(local)
    trust.offer_policy(signed(1), clock(), COLLECTOR)
    trust.load(clock())
    assert trust.offer_grants([grant(local.device_id())], clock())
    seen = Seen()
    trust.subscribe(seen)
    assert not trust.offer_grants([grant(local.device_id())], clock())
    assert len(seen.values) == 1


def test_stored_grants_are_verified_at_load(local: LocalState) -> None:
    first = holder(local)
    first.offer_policy(signed(1), clock(), COLLECTOR)
    first.offer_grants([grant(local.device_id())], clock())
    assert first.in_force.grants == ()  # before load nothing is verified against
    in_force = holder(local).load(clock())
    assert [g.grant_id for g in in_force.grants] == ["g-other"]


def test_grants_are_verified_again_when_another_policy_comes_into_force(
    local: LocalState,
) -> None:
    trust = holder(local)
    trust.offer_policy(signed(1, admin=False), clock(), COLLECTOR)
    trust.load(clock())
    trust.offer_grants([grant(local.device_id())], clock())
    assert trust.in_force.grants == ()  # version 1 lists no admin key
    trust.offer_policy(signed(2), clock(), COLLECTOR)
    assert [g.grant_id for g in trust.in_force.grants] == ["g-other"]
    trust.offer_policy(signed(3, admin=False), clock(), COLLECTOR)
    assert trust.in_force.grants == ()


def test_a_grant_list_that_cannot_be_stored_changes_nothing(
    local: LocalState, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust = holder(local)
    trust.offer_policy(signed(1), clock(), COLLECTOR)
    trust.load(clock())

    def full(grants: list[bytes]) -> None:
        raise LocalStateError("cannot write grants.json: No space left on device")

    monkeypatch.setattr(local, "save_grants", full)
    with pytest.raises(LocalStateError):
        trust.offer_grants([grant(local.device_id())], clock())
    assert trust.in_force.grants == ()
    monkeypatch.undo()
    assert trust.offer_grants([grant(local.device_id())], clock())  # tried again next round
