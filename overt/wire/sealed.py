"""The sealed batch (format 1): the one form in which captured data leaves the agent.

This module owns the sealed-batch framing and its three operations:
``seal_batch`` (agent), ``parse_sealed`` and ``verify_sealed`` (collector
and export), ``open_sealed`` (export, with the dataset private key), and
the parsing of the public keys they take (``dataset_public_key``,
``ed25519_from_b64``). It takes and returns bytes and keys; it holds no
paths (the dataset key files are ``policies.keys``'s), validates the header
with the header's own parser (``overt.wire.batch.BatchHeader.from_json``)
and knows nothing of the body it encrypts (``overt.wire.body``).

docs/FORMATS.md ("Sealed batch") specifies the bytes, the signature's
context and the HPKE suite.

Exceptions, all :class:`SealedBatchError`::

    SealedBatchError
    ├── MalformedSealedBatchError   bad magic, lengths, header JSON or fields
    ├── BatchSignatureError         the device signature does not verify
    └── BatchDecryptionError        wrong dataset key, wrong info, or tampered
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from .batch import MAX_HEADER_BYTES, BatchHeader
from .errors import HeaderFormatError

MAGIC = b"OVSB\x01"
FORMAT = 1
SIGNATURE_CONTEXT = b"overt-sealed-batch-v1\x00"
INFO_CONTEXT = b"overt-batch-v1\x00"
MEDIA_TYPE = "application/vnd.overt.sealed-batch; version=1"

#: The largest sealed batch anyone accepts (the agent closes batches far sooner).
MAX_SEALED_BYTES = 8 * 1024 * 1024
SIGNATURE_BYTES = 64
#: HPKE adds the 32-byte encapsulated key and the 16-byte AEAD tag.
HPKE_OVERHEAD = 32 + 16

_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_PREFIX = len(MAGIC) + 4


class SealedBatchError(Exception):
    """Base of every error raised by ``overt.wire.sealed``."""

    label = "bad sealed batch"


class MalformedSealedBatchError(SealedBatchError):
    label = "malformed sealed batch"


class BatchSignatureError(SealedBatchError):
    label = "bad batch signature"


class BatchDecryptionError(SealedBatchError):
    label = "cannot decrypt"


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """A parsed (not yet verified) sealed batch."""

    header_bytes: bytes
    header: BatchHeader
    signature: bytes
    ciphertext: bytes

    @property
    def device_id(self) -> str:
        return self.header.device_id

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def batch_id(self) -> str:
        return self.header.batch_id

    @property
    def header_dict(self) -> dict[str, Any]:
        """The header as its JSON document (for stores that keep its fields)."""
        return self.header.to_dict()

    def to_bytes(self) -> bytes:
        return _frame(self.header_bytes, self.signature, self.ciphertext)


def _frame(header: bytes, signature: bytes, ciphertext: bytes) -> bytes:
    return MAGIC + struct.pack(">I", len(header)) + header + signature + ciphertext


def _signed_bytes(header: bytes, ciphertext: bytes) -> bytes:
    return SIGNATURE_CONTEXT + struct.pack(">I", len(header)) + header + ciphertext


def _info(header: bytes) -> bytes:
    return INFO_CONTEXT + header


def seal_batch(
    header: bytes,
    body: bytes,
    dataset_key: X25519PublicKey,
    device_key: Ed25519PrivateKey,
) -> bytes:
    """Encrypt ``body`` to the dataset key, bound to ``header``; sign; frame.

    ``header`` must be the batch header's canonical JSON; it is checked with
    the same rules the collector applies, so the agent never spools a batch
    the collector would refuse.
    """
    _parse_header(header)
    ciphertext = _SUITE.encrypt(body, dataset_key, info=_info(header))
    signature = device_key.sign(_signed_bytes(header, ciphertext))
    sealed = _frame(header, signature, ciphertext)
    if len(sealed) > MAX_SEALED_BYTES:
        raise MalformedSealedBatchError(
            f"sealed batch would be {len(sealed)} bytes, over the {MAX_SEALED_BYTES} limit"
        )
    return sealed


def parse_sealed(data: bytes) -> SealedBatch:
    """Split a sealed batch into its parts and check the header's shape."""
    if len(data) > MAX_SEALED_BYTES:
        raise MalformedSealedBatchError(f"more than {MAX_SEALED_BYTES} bytes")
    if len(data) < _PREFIX or data[: len(MAGIC)] != MAGIC:
        raise MalformedSealedBatchError("not an Overt sealed batch (format 1)")
    (header_len,) = struct.unpack(">I", data[len(MAGIC) : _PREFIX])
    if header_len > MAX_HEADER_BYTES:
        raise MalformedSealedBatchError(f"header length {header_len} over the limit")
    header_end = _PREFIX + header_len
    signature_end = header_end + SIGNATURE_BYTES
    if len(data) < signature_end + HPKE_OVERHEAD:
        raise MalformedSealedBatchError("truncated")
    header_bytes = data[_PREFIX:header_end]
    return SealedBatch(
        header_bytes=header_bytes,
        header=_parse_header(header_bytes),
        signature=data[header_end:signature_end],
        ciphertext=data[signature_end:],
    )


def _parse_header(header: bytes) -> BatchHeader:
    try:
        return BatchHeader.from_json(header)
    except HeaderFormatError as exc:
        raise MalformedSealedBatchError(str(exc)) from exc


def verify_sealed(sealed: SealedBatch, device_key: Ed25519PublicKey) -> None:
    """Raise :class:`BatchSignatureError` unless the device key signed this batch."""
    try:
        device_key.verify(sealed.signature, _signed_bytes(sealed.header_bytes, sealed.ciphertext))
    except InvalidSignature as exc:
        raise BatchSignatureError(
            f"batch {sealed.batch_id} is not signed by device {sealed.device_id}"
        ) from exc


def open_sealed(sealed: SealedBatch, dataset_key: X25519PrivateKey) -> bytes:
    """Decrypt the body with the dataset private key (verify the signature first)."""
    try:
        body = _SUITE.decrypt(sealed.ciphertext, dataset_key, info=_info(sealed.header_bytes))
    except (InvalidTag, ValueError) as exc:
        raise BatchDecryptionError(
            f"batch {sealed.batch_id} does not decrypt with this key (sealed to dataset key "
            f"{sealed.header.dataset_key_id!r}; wrong key, or the batch was altered)"
        ) from exc
    if len(body) != sealed.header.body_size:
        raise BatchDecryptionError(
            f"batch {sealed.batch_id}: body is {len(body)} bytes, header says "
            f"{sealed.header.body_size}"
        )
    return body


# ----------------------------------------------------------------- public keys


def dataset_public_key(b64: str) -> X25519PublicKey:
    """The X25519 key behind a policy's ``dataset_key.public_key``."""
    try:
        raw = base64.b64decode(b64, validate=True)
        return X25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise MalformedSealedBatchError(f"not an X25519 public key: {exc}") from exc


def dataset_public_b64(key: X25519PrivateKey | X25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def ed25519_from_b64(b64: str) -> Ed25519PublicKey:
    """A device's Ed25519 public key from raw base64 (the enrollment form)."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise MalformedSealedBatchError(f"not an Ed25519 public key: {exc}") from exc
