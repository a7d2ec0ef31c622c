"""The sealed-batch format, attack by attack: every altered, truncated, swapped or
mis-keyed batch is refused with its own error, and a sealed batch never shows
its plaintext."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from overt.wire.batch import BatchHeader, SignalCounts
from overt.wire.sealed import (
    HPKE_OVERHEAD,
    MAGIC,
    MAX_HEADER_BYTES,
    MAX_SEALED_BYTES,
    SIGNATURE_BYTES,
    BatchDecryptionError,
    BatchSignatureError,
    MalformedSealedBatchError,
    SealedBatch,
    SealedBatchError,
    _signed_bytes,
    dataset_public_key,
    ed25519_from_b64,
    open_sealed,
    parse_sealed,
    seal_batch,
    verify_sealed,
)
from policies.keys import raw_public_bytes

# A body nobody would find by accident in random bytes.
BODY = b"OVERT-PLAINTEXT-CANARY:" + b"the quarterly numbers are 4242; " * 64

DATASET = X25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_DATASET = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
DEVICE = Ed25519PrivateKey.from_private_bytes(b"d" * 32)
OTHER_DEVICE = Ed25519PrivateKey.from_private_bytes(b"e" * 32)


def header(**changes: object) -> bytes:
    doc: dict[str, object] = {
        "format": 1,
        "device_id": "dev-1",
        "batch_id": "a" * 32,
        "seq": 7,
        "start_ms": 1_800_000_000_000,
        "end_ms": 1_800_000_060_000,
        "policy_version": 3,
        "dataset_key_id": "dataset-2026",
        "counts": COUNTS,
        "app_ids": ["editor"],
        "body_size": len(BODY),
    }
    doc.update(changes)
    doc = {k: v for k, v in doc.items() if v is not _DROP}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


_DROP = object()
COUNTS = asdict(SignalCounts(clicks=4, screenshots=1))


def sealed(head: bytes | None = None, body: bytes = BODY) -> bytes:
    return seal_batch(head or header(), body, DATASET.public_key(), DEVICE)


def accept(data: bytes, device: Ed25519PrivateKey = DEVICE) -> bytes:
    """What the collector and the export do: parse, verify, then open."""
    batch = parse_sealed(data)
    verify_sealed(batch, device.public_key())
    return open_sealed(batch, DATASET)


def frame(head: bytes, signature: bytes, ciphertext: bytes) -> bytes:
    return MAGIC + struct.pack(">I", len(head)) + head + signature + ciphertext


# ------------------------------------------------------------- round trip


def test_a_sealed_batch_opens_to_its_body_with_the_dataset_key() -> None:
    data = sealed()
    batch = parse_sealed(data)
    assert batch.header == BatchHeader.from_json(header())
    assert batch.header_dict == json.loads(header())
    assert batch.header_bytes == header()
    assert (batch.device_id, batch.seq, batch.batch_id) == ("dev-1", 7, "a" * 32)
    assert batch.to_bytes() == data
    assert accept(data) == BODY


def test_the_frame_is_magic_length_header_signature_ciphertext() -> None:
    data = sealed()
    head = header()
    assert data[:5] == b"OVSB\x01"
    assert struct.unpack(">I", data[5:9])[0] == len(head)
    assert data[9 : 9 + len(head)] == head
    assert len(data) == 9 + len(head) + SIGNATURE_BYTES + HPKE_OVERHEAD + len(BODY)


def test_an_empty_body_seals_and_opens() -> None:
    data = sealed(header(body_size=0), b"")
    assert accept(data) == b""


# ------------------------------------------------------- encryption is real


def test_sealed_bytes_do_not_contain_the_plaintext() -> None:
    data = sealed()
    assert b"OVERT-PLAINTEXT-CANARY" not in data
    assert b"quarterly" not in data
    # Not even a 12-byte window of the body survives.
    windows = {BODY[i : i + 12] for i in range(len(BODY) - 12)}
    assert not any(w in data for w in windows)


def test_sealing_twice_gives_different_ciphertexts() -> None:
    one, two = parse_sealed(sealed()), parse_sealed(sealed())
    assert one.ciphertext != two.ciphertext  # a fresh ephemeral key each time
    assert open_sealed(one, DATASET) == open_sealed(two, DATASET) == BODY


def test_a_batch_sealed_to_one_dataset_key_does_not_open_with_another() -> None:
    """A rotated dataset key: the old batch names its key id, the new private key fails."""
    batch = parse_sealed(sealed())
    verify_sealed(batch, DEVICE.public_key())
    with pytest.raises(BatchDecryptionError, match="dataset-2026"):
        open_sealed(batch, OTHER_DATASET)


# ------------------------------------------------------------- named attacks


def _swap_header(data: bytes) -> bytes:
    """Another batch's header on this ciphertext, re-signed by the same device."""
    batch = parse_sealed(data)
    other = header(seq=8, batch_id="b" * 32)
    signature = DEVICE.sign(_signed_bytes(other, batch.ciphertext))
    return frame(other, signature, batch.ciphertext)


def _move_time(data: bytes) -> bytes:
    batch = parse_sealed(data)
    other = header(start_ms=1_700_000_000_000)
    return frame(other, DEVICE.sign(_signed_bytes(other, batch.ciphertext)), batch.ciphertext)


def _claim_other_device(data: bytes) -> bytes:
    """Another device's id in the header, signed with that device's key."""
    batch = parse_sealed(data)
    other = header(device_id="dev-2")
    signature = OTHER_DEVICE.sign(_signed_bytes(other, batch.ciphertext))
    return frame(other, signature, batch.ciphertext)


def _header_unsigned_change(data: bytes) -> bytes:
    batch = parse_sealed(data)
    return frame(header(seq=8), batch.signature, batch.ciphertext)


def _ciphertext_from_other_batch(data: bytes) -> bytes:
    batch = parse_sealed(data)
    other = parse_sealed(sealed(header(seq=8, batch_id="b" * 32)))
    return frame(batch.header_bytes, batch.signature, other.ciphertext)


def _signature_from_other_batch(data: bytes) -> bytes:
    batch = parse_sealed(data)
    other = parse_sealed(sealed(header(seq=8, batch_id="b" * 32)))
    return frame(batch.header_bytes, other.signature, batch.ciphertext)


def _signed_by_other_device(data: bytes) -> bytes:
    batch = parse_sealed(data)
    signature = OTHER_DEVICE.sign(_signed_bytes(batch.header_bytes, batch.ciphertext))
    return frame(batch.header_bytes, signature, batch.ciphertext)


def _trailing_bytes(data: bytes) -> bytes:
    return data + b"\x00"


def _wrong_body_size(data: bytes) -> bytes:
    other = header(body_size=len(BODY) - 1)
    # The attacker cannot re-encrypt without the body; simulate a device that
    # sealed a body under a header lying about its size.
    ciphertext = parse_sealed(sealed(other)).ciphertext
    return frame(other, DEVICE.sign(_signed_bytes(other, ciphertext)), ciphertext)


@dataclass(frozen=True)
class Attack:
    name: str
    change: Callable[[bytes], bytes]
    error: type[SealedBatchError]


ATTACKS = [
    # Re-signed by the device, so only HPKE's info binding stops them.
    Attack("header of another batch on this ciphertext", _swap_header, BatchDecryptionError),
    Attack("time range moved", _move_time, BatchDecryptionError),
    Attack("header changed without re-signing", _header_unsigned_change, BatchSignatureError),
    Attack("ciphertext of another batch", _ciphertext_from_other_batch, BatchSignatureError),
    Attack("signature of another batch", _signature_from_other_batch, BatchSignatureError),
    Attack("signed by another device's key", _signed_by_other_device, BatchSignatureError),
    Attack("another device's header and key", _claim_other_device, BatchSignatureError),
    Attack("trailing byte", _trailing_bytes, BatchSignatureError),
    Attack("body size in header is wrong", _wrong_body_size, BatchDecryptionError),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_is_refused(attack: Attack) -> None:
    with pytest.raises(attack.error):
        accept(attack.change(sealed()))


def test_a_swapped_header_fails_to_decrypt_even_unverified() -> None:
    """The info binding holds on its own, without the signature check."""
    batch = parse_sealed(_swap_header(sealed()))
    verify_sealed(batch, DEVICE.public_key())  # the device re-signed it: valid
    with pytest.raises(BatchDecryptionError):
        open_sealed(batch, DATASET)


def test_a_claimed_device_verifies_only_with_that_devices_key() -> None:
    batch = parse_sealed(_claim_other_device(sealed()))
    verify_sealed(batch, OTHER_DEVICE.public_key())  # dev-2 did sign it
    with pytest.raises(BatchSignatureError, match="dev-2"):
        verify_sealed(batch, DEVICE.public_key())


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_flipped_bit_anywhere_is_refused(data: st.DataObject) -> None:
    original = sealed()
    index = data.draw(st.integers(0, len(original) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    damaged = bytearray(original)
    damaged[index] ^= 1 << bit
    with pytest.raises(SealedBatchError):
        accept(bytes(damaged))


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_a_flipped_ciphertext_bit_fails_decryption_without_the_signature(
    index: int, bit: int
) -> None:
    batch = parse_sealed(sealed())
    ciphertext = bytearray(batch.ciphertext)
    ciphertext[index % len(ciphertext)] ^= 1 << bit
    damaged = SealedBatch(batch.header_bytes, batch.header, batch.signature, bytes(ciphertext))
    with pytest.raises(BatchDecryptionError):
        open_sealed(damaged, DATASET)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 100_000))
def test_every_truncation_is_refused(cut: int) -> None:
    data = sealed()
    with pytest.raises(SealedBatchError):
        accept(data[: cut % len(data)])


@pytest.mark.parametrize("cut", [0, 4, 5, 8, 9, 50], ids=lambda n: f"{n}-bytes")
def test_truncation_in_the_prefix_is_malformed(cut: int) -> None:
    with pytest.raises(MalformedSealedBatchError):
        parse_sealed(sealed()[:cut])


# ------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("not json", b"{nope"),
        ("not utf-8", b"\xff\xfe{}"),
        ("json array", b"[1,2]"),
        ("nested thousands deep", b"[" * 50_000),
        ("integer with 5000 digits", b'{"seq":' + b"9" * 5000 + b"}"),
        ("missing seq", header(seq=_DROP)),
        ("format 2", header(format=2)),
        ("seq zero", header(seq=0)),
        ("seq as a string", header(seq="7")),
        ("seq as a boolean", header(seq=True)),
        ("seq beyond 64 bits", header(seq=2**63)),
        ("end before start", header(end_ms=1)),
        ("negative body size", header(body_size=-1)),
        ("empty device id", header(device_id="")),
        ("oversized batch id", header(batch_id="x" * 129)),
        ("count not an integer", header(counts={**COUNTS, "clicks": 1.5})),
        ("count beyond 64 bits", header(counts={**COUNTS, "clicks": 2**64})),
        ("a count missing", header(counts={"clicks": 4})),
        ("an unknown field", header(keys=10)),
        ("app id not a string", header(app_ids=[1])),
    ],
)
def test_a_malformed_header_is_refused_when_sealing_and_parsing(name: str, head: bytes) -> None:
    with pytest.raises(MalformedSealedBatchError):
        seal_batch(head, BODY, DATASET.public_key(), DEVICE)
    data = frame(head, b"\x00" * SIGNATURE_BYTES, b"\x00" * HPKE_OVERHEAD)
    with pytest.raises(MalformedSealedBatchError):
        parse_sealed(data)


def test_bad_magic_and_oversized_lengths_are_malformed() -> None:
    data = sealed()
    with pytest.raises(MalformedSealedBatchError, match="not an Overt"):
        parse_sealed(b"OVSB\x02" + data[5:])
    with pytest.raises(MalformedSealedBatchError, match="over the limit"):
        parse_sealed(MAGIC + struct.pack(">I", MAX_HEADER_BYTES + 1) + data[9:])
    with pytest.raises(MalformedSealedBatchError, match=str(MAX_SEALED_BYTES)):
        parse_sealed(data + b"\x00" * MAX_SEALED_BYTES)


def test_a_body_too_large_for_the_format_is_refused_at_sealing() -> None:
    big = b"\x00" * MAX_SEALED_BYTES
    with pytest.raises(MalformedSealedBatchError, match="over the"):
        seal_batch(header(body_size=len(big)), big, DATASET.public_key(), DEVICE)


# ------------------------------------------------------------------ public keys


@pytest.mark.parametrize(
    "text", ["not base64!", base64.b64encode(b"short").decode(), ""], ids=["b64", "len", "empty"]
)
def test_a_bad_public_key_text_is_malformed(text: str) -> None:
    with pytest.raises(MalformedSealedBatchError):
        dataset_public_key(text)
    with pytest.raises(MalformedSealedBatchError):
        ed25519_from_b64(text)


def test_a_device_public_key_round_trips_through_base64() -> None:
    raw = base64.b64encode(raw_public_bytes(DEVICE.public_key())).decode()
    verify_sealed(parse_sealed(sealed()), ed25519_from_b64(raw))
