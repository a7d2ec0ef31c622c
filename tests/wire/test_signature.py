"""Device request signatures: a signed request verifies only unchanged, only in
time, only under its own device's key; every broken header says why."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from overt.wire.signature import (
    DEVICE_HEADER,
    MAX_SKEW_MS,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RequestAuthError,
    canonical_request,
    claimed_device,
    sign_request,
    verify_request,
)

KEY = Ed25519PrivateKey.from_private_bytes(b"k" * 32)
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"o" * 32)
NOW = 1_800_000_000_000
BODY = b'{"start_ms":1,"end_ms":2,"reason":"discarded"}'
TARGET = "/v1/erasure?x=1"


def signed(**changes: object) -> dict[str, str]:
    args: dict[str, object] = {
        "key": KEY,
        "device_id": "dev-1",
        "method": "POST",
        "target": TARGET,
        "body": BODY,
        "now_ms": NOW,
    }
    args.update(changes)
    return sign_request(**args)  # type: ignore[arg-type]


def verify(
    headers: dict[str, str],
    *,
    method: str = "POST",
    target: str = TARGET,
    body: bytes = BODY,
    key: Ed25519PrivateKey = KEY,
    now_ms: int = NOW,
) -> tuple[str, str]:
    return verify_request(headers, method, target, body, key.public_key(), now_ms)


def test_a_signed_request_verifies_and_names_its_device_and_nonce() -> None:
    headers = signed()
    assert set(headers) == {DEVICE_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER}
    assert verify(headers) == ("dev-1", headers[NONCE_HEADER])
    assert claimed_device(headers) == "dev-1"


def test_header_names_may_come_in_lower_case() -> None:
    headers = {k.lower(): v for k, v in signed().items()}
    assert verify(headers)[0] == "dev-1"


def test_every_request_gets_a_fresh_nonce() -> None:
    nonces = {signed()[NONCE_HEADER] for _ in range(50)}
    assert len(nonces) == 50
    assert all(16 <= len(n) <= 64 for n in nonces)


def test_the_method_is_compared_case_insensitively() -> None:
    verify(signed(method="post"), method="POST")


def test_the_canonical_string_covers_every_field() -> None:
    text = canonical_request("post", "/a?b", "dev", 5, "nonce", b"body").decode()
    lines = text.split("\n")
    assert lines[:6] == ["overt-request-v1", "POST", "/a?b", "dev", "5", "nonce"]
    assert len(lines[6]) == 64  # hex SHA-256 of the body


# ------------------------------------------------------------ time window


@pytest.mark.parametrize("offset", [-MAX_SKEW_MS, 0, MAX_SKEW_MS], ids=["-max", "0", "+max"])
def test_timestamps_inside_the_window_are_accepted(offset: int) -> None:
    verify(signed(), now_ms=NOW + offset)


@pytest.mark.parametrize(
    "offset", [-MAX_SKEW_MS - 1, MAX_SKEW_MS + 1, 86_400_000], ids=["future", "stale", "day-old"]
)
def test_a_timestamp_outside_the_window_is_refused(offset: int) -> None:
    with pytest.raises(RequestAuthError, match="window"):
        verify(signed(), now_ms=NOW + offset)


# ------------------------------------------------------------ named attacks


@dataclass(frozen=True)
class Alteration:
    name: str
    apply: Callable[[dict[str, str]], dict[str, object]]


ALTERATIONS = [
    Alteration("method", lambda h: {"method": "PUT"}),
    Alteration("target path", lambda h: {"target": "/v1/batches"}),
    Alteration("target query", lambda h: {"target": "/v1/erasure?x=2"}),
    Alteration("query dropped", lambda h: {"target": "/v1/erasure"}),
    Alteration("body", lambda h: {"body": BODY.replace(b"1", b"0")}),
    Alteration("empty body", lambda h: {"body": b""}),
    Alteration("device id", lambda h: {"headers": {**h, DEVICE_HEADER: "dev-2"}}),
    Alteration("timestamp", lambda h: {"headers": {**h, TIMESTAMP_HEADER: str(NOW + 1)}}),
    Alteration("nonce", lambda h: {"headers": {**h, NONCE_HEADER: "A" * 22}}),
    Alteration("another device's key", lambda h: {"key": OTHER_KEY}),
]


@pytest.mark.parametrize("alteration", ALTERATIONS, ids=lambda a: a.name)
def test_an_altered_request_does_not_verify(alteration: Alteration) -> None:
    headers = signed()
    changes = alteration.apply(headers)
    headers = changes.pop("headers", headers)  # type: ignore[assignment]
    with pytest.raises(RequestAuthError, match="does not verify"):
        verify(headers, **changes)  # type: ignore[arg-type]


def test_a_request_signed_by_another_device_for_its_own_id_fails_under_ours() -> None:
    headers = signed(key=OTHER_KEY, device_id="dev-2")
    verify(headers, key=OTHER_KEY)
    with pytest.raises(RequestAuthError):
        verify(headers, key=KEY)


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, 63), bit=st.integers(0, 7))
def test_a_flipped_signature_bit_is_refused(index: int, bit: int) -> None:
    headers = signed()
    raw = bytearray(base64.b64decode(headers[SIGNATURE_HEADER]))
    raw[index] ^= 1 << bit
    headers[SIGNATURE_HEADER] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(RequestAuthError):
        verify(headers)


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_flipped_body_bit_is_refused(index: int, bit: int) -> None:
    body = bytearray(BODY)
    body[index % len(body)] ^= 1 << bit
    with pytest.raises(RequestAuthError):
        verify(signed(), body=bytes(body))


# ------------------------------------------------------------ malformed headers


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("no device", {DEVICE_HEADER: None}, "device header"),
        ("oversized device", {DEVICE_HEADER: "d" * 129}, "device header"),
        ("no timestamp", {TIMESTAMP_HEADER: None}, "missing Overt-Timestamp"),
        ("no nonce", {NONCE_HEADER: None}, "missing Overt-Nonce"),
        ("no signature", {SIGNATURE_HEADER: None}, "missing Overt-Signature"),
        ("timestamp not a number", {TIMESTAMP_HEADER: "soon"}, "malformed timestamp"),
        ("negative timestamp", {TIMESTAMP_HEADER: "-1"}, "malformed timestamp"),
        ("superscript digit", {TIMESTAMP_HEADER: "\xb2"}, "malformed timestamp"),
        ("17-digit timestamp", {TIMESTAMP_HEADER: "1" * 17}, "malformed timestamp"),
        ("short nonce", {NONCE_HEADER: "abc"}, "malformed nonce"),
        ("long nonce", {NONCE_HEADER: "a" * 65}, "malformed nonce"),
        ("signature not base64", {SIGNATURE_HEADER: "!!!"}, "malformed signature"),
    ],
)
def test_a_malformed_header_is_refused_with_its_reason(
    name: str, change: dict[str, str | None], message: str
) -> None:
    headers: dict[str, str] = signed()
    for key, value in change.items():
        if value is None:
            del headers[key]
        else:
            headers[key] = value
    with pytest.raises(RequestAuthError, match=message):
        verify(headers)


def test_a_signature_of_the_wrong_length_does_not_verify() -> None:
    headers = signed()
    headers[SIGNATURE_HEADER] = base64.b64encode(b"\x00" * 10).decode()
    with pytest.raises(RequestAuthError, match="does not verify"):
        verify(headers)
