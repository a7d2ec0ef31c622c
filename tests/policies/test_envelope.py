"""The DSSE-style envelope: PAE, encoding, size limits."""

from __future__ import annotations

import io
import json
from typing import IO, cast

import pytest

from policies.envelope import (
    MAX_SIGNATURES,
    Envelope,
    Signature,
    pae,
    parse_envelope,
    read_limited,
    sign_envelope,
    verified_keyids,
)
from policies.errors import MalformedError, OversizedError

from ._build import KEYS, keyid, pub


def test_pae_matches_the_dsse_v1_example() -> None:
    # The example from the DSSE v1 protocol description.
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t/é", b"") == b"DSSEv1 4 t/\xc3\xa9 0 "


def test_signed_envelope_round_trips() -> None:
    data = sign_envelope(b"payload", "text/x-test", [KEYS["A"], KEYS["B"]])
    envelope = parse_envelope(data, 10_000)
    assert envelope.payload == b"payload"
    assert envelope.payload_type == "text/x-test"
    assert [s.keyid for s in envelope.signatures] == [keyid("A"), keyid("B")]
    assert verified_keyids(envelope, [pub("A"), pub("B"), pub("C")]) == {keyid("A"), keyid("B")}
    assert envelope.to_json() == data


def test_signatures_by_keys_outside_the_set_are_ignored() -> None:
    envelope = parse_envelope(sign_envelope(b"x", "t", [KEYS["A"], KEYS["E"]]), 10_000)
    assert verified_keyids(envelope, [pub("A")]) == {keyid("A")}
    assert verified_keyids(envelope, [pub("B")]) == frozenset()


def test_signing_twice_with_one_key_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        sign_envelope(b"x", "t", [KEYS["A"], KEYS["A"]])


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(OversizedError):
        parse_envelope(b"{" * 101, 100)


def test_read_limited_reads_at_most_one_byte_past_the_limit() -> None:
    stream = io.BytesIO(b"x" * 1000)
    with pytest.raises(OversizedError):
        read_limited(stream, 100)
    assert stream.tell() == 101
    assert read_limited(io.BytesIO(b"x" * 100), 100) == b"x" * 100


class _Trickle(io.RawIOBase):
    """A stream that returns one byte per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk, self._data = self._data[:1], self._data[1:]
        return chunk


def test_read_limited_keeps_reading_short_reads() -> None:
    assert read_limited(cast(IO[bytes], _Trickle(b"abcdef")), 10) == b"abcdef"


def test_too_many_signatures_are_refused() -> None:
    envelope = Envelope("t", b"x", tuple(Signature(str(i), b"\0" * 64) for i in range(33)))
    assert len(envelope.signatures) > MAX_SIGNATURES
    with pytest.raises(MalformedError, match="more than"):
        parse_envelope(envelope.to_json(), 100_000)


@pytest.mark.parametrize(
    "document",
    [
        {"payloadType": "", "payload": "", "signatures": []},
        {"payloadType": 3, "payload": "", "signatures": []},
        {"payloadType": "t", "signatures": []},
        {"payloadType": "t", "payload": "", "signatures": {}},
        {"payloadType": "t", "payload": "", "signatures": [{"sig": ""}]},
        {"payloadType": "t", "payload": "", "signatures": [{"keyid": 1, "sig": ""}]},
        {"payloadType": "t", "payload": "", "signatures": [{"keyid": "k", "sig": "", "x": 1}]},
        {"payloadType": "t", "payload": "YQ", "signatures": []},
    ],
    ids=[
        "empty type",
        "type not a string",
        "no payload",
        "signatures not a list",
        "signature without keyid",
        "keyid not a string",
        "signature with extra field",
        "unpadded base64",
    ],
)
def test_malformed_envelope_shapes(document: dict[str, object]) -> None:
    with pytest.raises(MalformedError):
        parse_envelope(json.dumps(document).encode(), 10_000)


def test_duplicate_envelope_keys_are_refused() -> None:
    data = b'{"payloadType":"t","payload":"","payload":"YQ==","signatures":[]}'
    with pytest.raises(MalformedError, match="duplicate"):
        parse_envelope(data, 10_000)


def test_nan_is_not_json() -> None:
    with pytest.raises(MalformedError):
        parse_envelope(b'{"payloadType":NaN}', 10_000)
