"""Exemption grant verification, attack by attack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from policies.envelope import MAX_GRANT_BYTES, sign_envelope
from policies.errors import (
    BadSignatureError,
    CategoryNotAllowedError,
    ExpiredError,
    MalformedError,
    MissingSignatureError,
    NotYetValidError,
    OversizedError,
    PolicyError,
    ScopeMismatchError,
    UnknownPayloadTypeError,
    UntrustedKeyError,
)
from policies.model import GRANT_PAYLOAD_TYPE, POLICY_PAYLOAD_TYPE, Category, Grant
from policies.verify import parse_policy_payload, sign_grant, verify_grant

from ._build import (
    DEVICE_ID,
    KEYS,
    NOW,
    b64,
    edit_envelope,
    grant_doc,
    policy_doc,
    sign_grant_doc,
    stamp,
    to_bytes,
)

POLICY = parse_policy_payload(to_bytes(policy_doc(1)))


@dataclass(frozen=True)
class GrantAttack:
    build: Callable[[], bytes]
    error: type[PolicyError]
    user: str | None = None


GRANT_ATTACKS: dict[str, GrantAttack] = {
    "unauthorised admin key": GrantAttack(
        lambda: sign_grant_doc(grant_doc(), "ADMIN_UNLISTED"), UntrustedKeyError
    ),
    "policy signing key is not an admin key": GrantAttack(
        lambda: sign_grant_doc(grant_doc(), "A"), UntrustedKeyError
    ),
    "admin key not allowed for that category": GrantAttack(
        lambda: sign_grant_doc(grant_doc(category="sensitive"), "ADMIN_BATTERY"),
        CategoryNotAllowedError,
    ),
    "other device": GrantAttack(
        lambda: sign_grant_doc(grant_doc(device_id="dev-0002")), ScopeMismatchError
    ),
    "other tenant": GrantAttack(
        lambda: sign_grant_doc(grant_doc(tenant="other-corp")), ScopeMismatchError
    ),
    "other user": GrantAttack(
        lambda: sign_grant_doc(grant_doc(user="alice")), ScopeMismatchError, user="bob"
    ),
    "user-bound grant, user unknown": GrantAttack(
        lambda: sign_grant_doc(grant_doc(user="alice")), ScopeMismatchError
    ),
    "expired": GrantAttack(
        lambda: sign_grant_doc(
            grant_doc(
                issued_at=stamp(NOW - timedelta(days=8)), expires=stamp(NOW - timedelta(seconds=1))
            )
        ),
        ExpiredError,
    ),
    "not yet valid": GrantAttack(
        lambda: sign_grant_doc(grant_doc(issued_at=stamp(NOW + timedelta(minutes=10)))),
        NotYetValidError,
    ),
    "tampered": GrantAttack(
        lambda: edit_envelope(
            sign_grant_doc(grant_doc(category="battery"), "ADMIN_BATTERY"),
            payload=b64(to_bytes(grant_doc(category="sensitive"))),
        ),
        BadSignatureError,
    ),
    "payload type changed": GrantAttack(
        lambda: edit_envelope(sign_grant_doc(grant_doc()), payloadType=POLICY_PAYLOAD_TYPE),
        BadSignatureError,
    ),
    "wrong payload type": GrantAttack(
        lambda: sign_grant_doc(grant_doc(), payload_type=POLICY_PAYLOAD_TYPE),
        UnknownPayloadTypeError,
    ),
    "missing signature": GrantAttack(
        lambda: edit_envelope(sign_grant_doc(grant_doc()), signatures=[]), MissingSignatureError
    ),
    "oversized": GrantAttack(
        lambda: sign_envelope(
            to_bytes(grant_doc()) + b" " * MAX_GRANT_BYTES,
            GRANT_PAYLOAD_TYPE,
            [KEYS["ADMIN_ALL"]],
        ),
        OversizedError,
    ),
    "unknown category": GrantAttack(
        lambda: sign_grant_doc(grant_doc(category="vacation")), MalformedError
    ),
    "not JSON": GrantAttack(lambda: b"granted!", MalformedError),
}


@pytest.mark.parametrize("name", list(GRANT_ATTACKS), ids=list(GRANT_ATTACKS))
def test_grant_attack_is_rejected(name: str) -> None:
    attack = GRANT_ATTACKS[name]
    before = POLICY.model_dump_json()
    with pytest.raises(attack.error):
        verify_grant(attack.build(), POLICY, DEVICE_ID, NOW, user=attack.user)
    assert POLICY.model_dump_json() == before


def _grant(**overrides: object) -> Grant:
    return Grant.model_validate(grant_doc(**overrides))


def test_signed_grant_round_trips() -> None:
    grant = _grant(category="sensitive")
    data = sign_grant(grant, KEYS["ADMIN_ALL"])
    assert verify_grant(data, POLICY, DEVICE_ID, NOW) == grant


def test_admin_key_may_grant_its_own_category() -> None:
    data = sign_grant(_grant(category="battery"), KEYS["ADMIN_BATTERY"])
    assert verify_grant(data, POLICY, DEVICE_ID, NOW).category is Category.BATTERY


def test_user_bound_grant_is_accepted_for_that_user() -> None:
    data = sign_grant(_grant(user="alice"), KEYS["ADMIN_ALL"])
    assert verify_grant(data, POLICY, DEVICE_ID, NOW, user="alice").user == "alice"


def test_grant_without_user_covers_every_user_of_the_device() -> None:
    data = sign_grant(_grant(), KEYS["ADMIN_ALL"])
    assert verify_grant(data, POLICY, DEVICE_ID, NOW, user="anyone").user is None


def test_policy_without_grant_signers_accepts_no_grant() -> None:
    policy = parse_policy_payload(to_bytes(policy_doc(1, grant_signers=[])))
    with pytest.raises(UntrustedKeyError):
        verify_grant(sign_grant(_grant(), KEYS["ADMIN_ALL"]), policy, DEVICE_ID, NOW)
