"""Policy verification, attack by attack: each refused update is named, raises its
own error and leaves the persisted trust state byte-for-byte unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.envelope import MAX_POLICY_BYTES
from policies.errors import (
    BadSignatureError,
    ExpiredError,
    MalformedError,
    MissingSignatureError,
    NotYetValidError,
    OversizedError,
    PolicyError,
    RollbackError,
    RotationError,
    ScopeMismatchError,
    ThresholdNotMetError,
    UnknownPayloadTypeError,
    UntrustedKeyError,
    VersionReusedError,
)
from policies.model import GRANT_PAYLOAD_TYPE, SignerSet
from policies.store import TrustStore, accept_policy_file
from policies.verify import CLOCK_SKEW, DeviceScope, TrustState, verify_policy

from ._build import (
    GROUP,
    NOW,
    TENANT,
    b64,
    edit_envelope,
    policy_doc,
    rotation_doc,
    sign,
    signers,
    snapshot,
    stamp,
    to_bytes,
)

DEVICE = DeviceScope(tenant=TENANT, group=GROUP)
ONE_OF_A = (("A",), 1)
TWO_OF_AB = (("A", "B"), 2)


def _non_canonical_signature() -> bytes:
    data = sign(policy_doc(3), ["A"])
    envelope = json.loads(data)
    text = envelope["signatures"][0]["sig"]  # 64 bytes: 86 chars and "=="; 4 spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet[alphabet.index(text[-3]) ^ 1]  # same decoded bytes, other padding bits
    envelope["signatures"][0]["sig"] = text[:-3] + last + "=="
    return json.dumps(envelope).encode()


def _duplicated_signature() -> bytes:
    envelope = json.loads(sign(policy_doc(3), ["A"]))
    envelope["signatures"] = envelope["signatures"] * 2
    return json.dumps(envelope).encode()


def _signature_from_other_content() -> bytes:
    other = json.loads(sign(policy_doc(4), ["A"]))
    return edit_envelope(sign(policy_doc(3), ["A"]), signatures=other["signatures"])


def _duplicate_json_key() -> bytes:
    payload = to_bytes(policy_doc(3)).rstrip()
    assert payload.endswith(b"}")
    return sign(payload[:-1] + b', "version": 99}', ["A"])


def _with_exe_paths(*entries: object, never: bool = False) -> bytes:
    """Version 3 whose work app (or a never-capture entry) lists ``entries``."""
    match = {"exe_paths": list(entries)}
    if never:
        return sign(policy_doc(3, never_capture=[{"name": "KeePassXC", "match": match}]), ["A"])
    app = {"id": "workapp", "name": "Work app", "match": match}
    return sign(policy_doc(3, apps=[app]), ["A"])


_DIGEST = "ab" * 32


@dataclass(frozen=True)
class Attack:
    build: Callable[[], bytes]
    error: type[PolicyError]
    #: The signer set pinned at install; the store already holds version 2
    #: signed by all of these keys.
    pinned: tuple[tuple[str, ...], int] = ONE_OF_A


ATTACKS: dict[str, Attack] = {
    "rollback": Attack(lambda: sign(policy_doc(1), ["A"]), RollbackError),
    "same version, different bytes": Attack(
        lambda: sign(policy_doc(2, review_window_minutes=1), ["A"]), VersionReusedError
    ),
    "expired": Attack(
        lambda: sign(
            policy_doc(
                3,
                issued_at=stamp(NOW - timedelta(days=40)),
                expires=stamp(NOW - timedelta(seconds=1)),
            ),
            ["A"],
        ),
        ExpiredError,
    ),
    "expires exactly now": Attack(
        lambda: sign(policy_doc(3, expires=stamp(NOW)), ["A"]), ExpiredError
    ),
    "not yet valid": Attack(
        lambda: sign(
            policy_doc(3, issued_at=stamp(NOW + CLOCK_SKEW + timedelta(seconds=1))), ["A"]
        ),
        NotYetValidError,
    ),
    "wrong tenant": Attack(
        lambda: sign(
            policy_doc(3, scope={"tenant": "other-corp", "device_groups": [GROUP]}), ["A"]
        ),
        ScopeMismatchError,
    ),
    "wrong device group": Attack(
        lambda: sign(policy_doc(3, scope={"tenant": TENANT, "device_groups": ["lab"]}), ["A"]),
        ScopeMismatchError,
    ),
    "untrusted key": Attack(lambda: sign(policy_doc(3), ["E"]), UntrustedKeyError),
    "duplicate key id counts once": Attack(_duplicated_signature, ThresholdNotMetError, TWO_OF_AB),
    "threshold not met": Attack(
        lambda: sign(policy_doc(3), ["A"]), ThresholdNotMetError, TWO_OF_AB
    ),
    "threshold not met with an untrusted extra": Attack(
        lambda: sign(policy_doc(3), ["A", "E"]), ThresholdNotMetError, TWO_OF_AB
    ),
    "payload changed after signing": Attack(
        lambda: edit_envelope(sign(policy_doc(3), ["A"]), payload=b64(to_bytes(policy_doc(4)))),
        BadSignatureError,
    ),
    "payload type changed": Attack(
        lambda: edit_envelope(
            sign(policy_doc(3), ["A"]),
            payloadType="application/vnd.overt.policy+json; version=2",
        ),
        BadSignatureError,
    ),
    "signature from other content": Attack(_signature_from_other_content, BadSignatureError),
    "signature of the wrong length": Attack(
        lambda: edit_envelope(
            sign(policy_doc(3), ["A"]),
            signatures=[{"keyid": signers(["A"]).keys[0].keyid, "sig": b64(b"\0" * 10)}],
        ),
        BadSignatureError,
    ),
    "unknown payload type": Attack(
        lambda: sign(policy_doc(3), ["A"], payload_type="application/json"),
        UnknownPayloadTypeError,
    ),
    "policy signed as a grant": Attack(
        lambda: sign(policy_doc(3), ["A"], payload_type=GRANT_PAYLOAD_TYPE),
        UnknownPayloadTypeError,
    ),
    "truncated": Attack(lambda: sign(policy_doc(3), ["A"])[:-20], MalformedError),
    "empty file": Attack(lambda: b"", MalformedError),
    "not JSON": Attack(lambda: b"this is not a policy", MalformedError),
    "not UTF-8": Attack(lambda: b"\xff\xfe{}", MalformedError),
    "envelope is a list": Attack(lambda: b"[]", MalformedError),
    "unknown envelope field": Attack(
        lambda: edit_envelope(sign(policy_doc(3), ["A"]), extra="x"), MalformedError
    ),
    "bad base64 payload": Attack(
        lambda: edit_envelope(sign(policy_doc(3), ["A"]), payload="%%% not base64 %%%"),
        MalformedError,
    ),
    "non-canonical base64 signature": Attack(_non_canonical_signature, MalformedError),
    "schema-invalid payload": Attack(lambda: sign(policy_doc(0), ["A"]), MalformedError),
    "unknown field in payload": Attack(
        lambda: sign(policy_doc(3, capture_everything=True), ["A"]), MalformedError
    ),
    "payload not JSON": Attack(lambda: sign(b"version=3", ["A"]), MalformedError),
    "duplicate JSON key in signed payload": Attack(_duplicate_json_key, MalformedError),
    "relative exe path": Attack(lambda: _with_exe_paths("bin/workapp"), MalformedError),
    "exe path with ..": Attack(
        lambda: _with_exe_paths("/usr/bin/../../home/u/workapp"), MalformedError
    ),
    "exe path with NUL": Attack(lambda: _with_exe_paths("/usr/bin/workapp\u0000"), MalformedError),
    "short exe digest": Attack(
        lambda: _with_exe_paths({"path": "/usr/bin/workapp", "sha256": _DIGEST[:-2]}),
        MalformedError,
    ),
    "exe path pinned and unpinned": Attack(
        lambda: _with_exe_paths({"path": "/usr/bin/w", "sha256": _DIGEST}, "/usr/bin/w"),
        MalformedError,
    ),
    "digest in never_capture": Attack(
        lambda: _with_exe_paths({"path": "/usr/bin/keepassxc", "sha256": _DIGEST}, never=True),
        MalformedError,
    ),
    "oversized": Attack(
        lambda: sign(to_bytes(policy_doc(3)) + b" " * MAX_POLICY_BYTES, ["A"]), OversizedError
    ),
    "missing signatures": Attack(
        lambda: edit_envelope(sign(policy_doc(3), ["A"]), signatures=[]), MissingSignatureError
    ),
    "no signatures field": Attack(
        lambda: edit_envelope(sign(policy_doc(3), ["A"]), signatures=None), MissingSignatureError
    ),
    "rotation signed by old set only": Attack(
        lambda: sign(rotation_doc(3, ["B", "C"], 2), ["A"]), RotationError
    ),
    # The held set never signed it, so its payload is never parsed: the
    # refusal is about trust, before anyone can know it names new signers.
    "rotation signed by new set only": Attack(
        lambda: sign(rotation_doc(3, ["B", "C"], 2), ["B", "C"]), UntrustedKeyError
    ),
    "rotation short of the new threshold": Attack(
        lambda: sign(rotation_doc(3, ["B", "C"], 2), ["A", "B"]), RotationError
    ),
    "1-of-1 rotation not signed by new key": Attack(
        lambda: sign(rotation_doc(3, ["B"]), ["A"]), RotationError
    ),
    "threshold raised without the new threshold": Attack(
        lambda: sign(rotation_doc(3, ["A", "B"], 2), ["A"]), RotationError
    ),
    "rotation short of the old threshold": Attack(
        lambda: sign(rotation_doc(3, ["C"]), ["A", "C"]), ThresholdNotMetError, TWO_OF_AB
    ),
}


def _pinned(attack: Attack) -> SignerSet:
    names, threshold = attack.pinned
    return signers(names, threshold)


def _store_holding_version_2(tmp_path: Path, pinned: SignerSet) -> TrustStore:
    store = TrustStore(tmp_path / "trust")
    names = [k.name for k in pinned.keys]
    good = tmp_path / "v2.json"
    good.write_bytes(sign(policy_doc(2), names))
    accept_policy_file(good, store, pinned, DEVICE, NOW)
    return store


@pytest.mark.parametrize("name", list(ATTACKS), ids=list(ATTACKS))
def test_attack_is_rejected_and_persisted_state_is_unchanged(name: str, tmp_path: Path) -> None:
    attack = ATTACKS[name]
    pinned = _pinned(attack)
    store = _store_holding_version_2(tmp_path, pinned)
    before = snapshot(store.directory)
    held = store.load()
    assert held is not None
    attack_file = tmp_path / "attack.json"
    attack_file.write_bytes(attack.build())

    with pytest.raises(attack.error):
        accept_policy_file(attack_file, store, pinned, DEVICE, NOW)
    with pytest.raises(attack.error):  # the pure core agrees, whatever the store does
        verify_policy(attack_file.read_bytes(), pinned, held.state, DEVICE, NOW)

    assert snapshot(store.directory) == before
    assert store.load() == held


@pytest.mark.parametrize("name", list(ATTACKS), ids=list(ATTACKS))
def test_every_refusal_is_a_named_error_not_the_base_class(name: str) -> None:
    attack = ATTACKS[name]
    pinned = _pinned(attack)
    names = [k.name for k in pinned.keys]
    _, held = verify_policy(sign(policy_doc(2), names), pinned, None, DEVICE, NOW)
    with pytest.raises(PolicyError) as refused:
        verify_policy(attack.build(), pinned, held, DEVICE, NOW)
    assert type(refused.value) is not PolicyError
    assert isinstance(refused.value, attack.error)


def test_schema_error_names_the_first_invalid_location() -> None:
    data = sign(policy_doc(3, scope={"tenant": "bad tenant!", "device_groups": [GROUP]}), ["A"])
    with pytest.raises(MalformedError, match=r"scope\.tenant"):
        verify_policy(data, signers(["A"]), None, DEVICE, NOW)


def test_first_policy_is_accepted_with_the_pinned_keys() -> None:
    pinned = signers(["A", "B"], 2)
    policy, state = verify_policy(sign(policy_doc(1), ["A", "B"]), pinned, None, DEVICE, NOW)
    assert policy.version == 1
    assert state.version == 1
    assert state.signers == pinned
    assert state.expires == policy.expires


def test_newer_version_replaces_the_state() -> None:
    pinned = signers(["A"])
    _, v1 = verify_policy(sign(policy_doc(1), ["A"]), pinned, None, DEVICE, NOW)
    _, v2 = verify_policy(sign(policy_doc(2), ["A"]), pinned, v1, DEVICE, NOW)
    assert v2.version == 2
    assert v2.payload_sha256 != v1.payload_sha256


def test_identical_payload_again_returns_the_same_state() -> None:
    pinned = signers(["A"])
    data = sign(policy_doc(1), ["A"])
    _, state = verify_policy(data, pinned, None, DEVICE, NOW)
    _, again = verify_policy(data, pinned, state, DEVICE, NOW + timedelta(hours=1))
    assert again is state


def test_identical_payload_with_more_signatures_is_also_a_no_op() -> None:
    pinned = signers(["A", "B"], 1)
    payload = to_bytes(policy_doc(1))
    _, state = verify_policy(sign(payload, ["A"]), pinned, None, DEVICE, NOW)
    _, again = verify_policy(sign(payload, ["A", "B"]), pinned, state, DEVICE, NOW)
    assert again is state


def test_identical_payload_is_still_refused_once_expired() -> None:
    pinned = signers(["A"])
    data = sign(policy_doc(1), ["A"])
    _, state = verify_policy(data, pinned, None, DEVICE, NOW)
    with pytest.raises(ExpiredError):
        verify_policy(data, pinned, state, DEVICE, NOW + timedelta(days=31))


def test_issued_in_the_future_within_clock_skew_is_accepted() -> None:
    data = sign(policy_doc(1, issued_at=stamp(NOW + CLOCK_SKEW)), ["A"])
    policy, _ = verify_policy(data, signers(["A"]), None, DEVICE, NOW)
    assert policy.version == 1


def test_all_groups_scope_covers_any_device_group() -> None:
    data = sign(policy_doc(1, scope={"tenant": TENANT, "device_groups": ["*"]}), ["A"])
    device = DeviceScope(tenant=TENANT, group="anything")
    policy, _ = verify_policy(data, signers(["A"]), None, device, NOW)
    assert policy.scope.device_groups == ("*",)


def test_scope_checks_can_be_skipped_only_explicitly() -> None:
    data = sign(policy_doc(1, scope={"tenant": "other-corp", "device_groups": ["lab"]}), ["A"])
    policy, _ = verify_policy(data, signers(["A"]), None, DeviceScope(None, None), NOW)
    assert policy.scope.tenant == "other-corp"


def test_rotation_signed_by_both_sets_is_accepted_and_the_new_set_takes_over(
    tmp_path: Path,
) -> None:
    pinned = signers(["A"])
    store = _store_holding_version_2(tmp_path, pinned)
    rotation = tmp_path / "v3.json"
    rotation.write_bytes(sign(rotation_doc(3, ["B", "C"], 2), ["A", "B", "C"]))

    _, state = accept_policy_file(rotation, store, pinned, DEVICE, NOW)

    assert state.signers == signers(["B", "C"], 2)
    held = store.load()
    assert held is not None
    assert held.state == state

    # The old key alone is no longer trusted, even though it is still pinned.
    old_key_only = tmp_path / "v4-old.json"
    old_key_only.write_bytes(sign(policy_doc(4), ["A"]))
    before = snapshot(store.directory)
    with pytest.raises(UntrustedKeyError):
        accept_policy_file(old_key_only, store, pinned, DEVICE, NOW)
    assert snapshot(store.directory) == before

    # One of the new set is not enough either; both are.
    one_new = tmp_path / "v4-one.json"
    one_new.write_bytes(sign(policy_doc(4), ["B"]))
    with pytest.raises(ThresholdNotMetError):
        accept_policy_file(one_new, store, pinned, DEVICE, NOW)
    both_new = tmp_path / "v4.json"
    both_new.write_bytes(sign(policy_doc(4), ["B", "C"]))
    _, v4 = accept_policy_file(both_new, store, pinned, DEVICE, NOW)
    assert v4.version == 4
    assert v4.signers == signers(["B", "C"], 2)


def test_rotation_policy_accepted_again_is_a_no_op() -> None:
    pinned = signers(["A"])
    data = sign(rotation_doc(1, ["B"]), ["A", "B"])
    _, state = verify_policy(data, pinned, None, DEVICE, NOW)
    _, again = verify_policy(data, pinned, state, DEVICE, NOW)
    assert again is state
    assert state.signers == signers(["B"])


def test_naming_the_current_signers_is_not_a_rotation() -> None:
    pinned = signers(["A"])
    _, state = verify_policy(sign(rotation_doc(1, ["A"]), ["A"]), pinned, None, DEVICE, NOW)
    assert state.signers.keyids == pinned.keyids


def test_now_must_carry_a_time_zone() -> None:
    with pytest.raises(ValueError, match="timezone"):
        verify_policy(
            sign(policy_doc(1), ["A"]), signers(["A"]), None, DEVICE, datetime(2026, 11, 22)
        )


def test_state_is_an_immutable_value() -> None:
    _, state = verify_policy(sign(policy_doc(1), ["A"]), signers(["A"]), None, DEVICE, NOW)
    with pytest.raises(AttributeError):
        state.version = 99  # type: ignore[misc]
    assert isinstance(state, TrustState)


_SIGNED = sign(policy_doc(3), ["A"])
_PINNED = signers(["A"])


def test_the_fixed_signed_file_is_accepted_unflipped() -> None:
    verify_policy(_SIGNED, _PINNED, None, DEVICE, NOW)


@settings(max_examples=500, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(_SIGNED) - 1),
    xor=st.integers(min_value=1, max_value=255),
)
def test_flipping_any_byte_of_a_signed_policy_is_rejected(position: int, xor: int) -> None:
    flipped = bytearray(_SIGNED)
    flipped[position] ^= xor
    with pytest.raises(PolicyError):
        verify_policy(bytes(flipped), _PINNED, None, DEVICE, NOW)
