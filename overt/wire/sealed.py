"""Sealed batches: the one format in which captured data leaves the agent.

This module owns the sealed-batch wire and storage format (version 1), the
dataset key files, and the three operations on a sealed batch: ``seal_batch``
(agent), ``verify_sealed`` (collector and export), ``open_sealed`` (export,
with the dataset private key). It takes and returns bytes; it holds no paths
except in the key-file helpers, and it knows nothing of the batch body's
contents (that is ``overt.wire.body``).

Format 1, all integers big-endian::

    magic       5 bytes   b"OVSB" + b"\\x01"
    header_len  4 bytes   length of the header
    header      JSON      the batch header, canonical JSON (plaintext, signed)
    signature   64 bytes  Ed25519 by the device key over
                          SIGNATURE_CONTEXT + header_len + header + ciphertext
    ciphertext  rest      HPKE single-shot output (encapsulated key || AEAD
                          ciphertext) of the batch body

HPKE suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 (RFC
9180, base mode), sealed to the policy's dataset public key with
``info = INFO_CONTEXT + header``: a body cannot be moved under another header
(another device, sequence number or time range) without failing to decrypt.
The device signature lets the collector prove who sent a batch without being
able to read it.

Dataset key files: ``NAME.key`` is the X25519 private key as PKCS#8 PEM,
created with mode 0600 and never overwritten; ``NAME.pub`` is the public key
as raw base64 on one line (the form a policy's ``dataset_key.public_key``
takes).

Exceptions, all :class:`SealedBatchError`::

    SealedBatchError
    ├── MalformedSealedBatchError   bad magic, lengths, header JSON or fields
    ├── BatchSignatureError         the device signature does not verify
    └── BatchDecryptionError        wrong dataset key, wrong info, or tampered
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

MAGIC = b"OVSB\x01"
FORMAT = 1
SIGNATURE_CONTEXT = b"overt-sealed-batch-v1\x00"
INFO_CONTEXT = b"overt-batch-v1\x00"
MEDIA_TYPE = "application/vnd.overt.sealed-batch; version=1"

MAX_HEADER_BYTES = 64 * 1024
#: The largest sealed batch anyone accepts (the agent closes batches far sooner).
MAX_SEALED_BYTES = 8 * 1024 * 1024
SIGNATURE_BYTES = 64
#: HPKE adds the 32-byte encapsulated key and the 16-byte AEAD tag.
HPKE_OVERHEAD = 32 + 16

#: Header integers must fit the signed 64-bit columns they are stored in.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_PREFIX = len(MAGIC) + 4

#: Header fields every sealed batch must carry, with their JSON types.
_REQUIRED_FIELDS: dict[str, type] = {
    "format": int,
    "device_id": str,
    "batch_id": str,
    "seq": int,
    "start_ms": int,
    "end_ms": int,
    "policy_version": int,
    "dataset_key_id": str,
    "counts": dict,
    "app_ids": list,
    "body_size": int,
}


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
    header: dict[str, Any]
    signature: bytes
    ciphertext: bytes

    @property
    def device_id(self) -> str:
        return str(self.header["device_id"])

    @property
    def seq(self) -> int:
        return int(self.header["seq"])

    @property
    def batch_id(self) -> str:
        return str(self.header["batch_id"])

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


def _parse_header(header: bytes) -> dict[str, Any]:
    if len(header) > MAX_HEADER_BYTES:
        raise MalformedSealedBatchError(f"header over {MAX_HEADER_BYTES} bytes")
    try:
        doc = json.loads(header)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and integers over Python's digit
        # limit; RecursionError, arrays nested thousands deep.
        raise MalformedSealedBatchError(f"header is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedSealedBatchError("header is not a JSON object")
    for name, kind in _REQUIRED_FIELDS.items():
        value = doc.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise MalformedSealedBatchError(f"header field {name!r} missing or not {kind.__name__}")
    if doc["format"] != FORMAT:
        raise MalformedSealedBatchError(f"unknown batch header format {doc['format']!r}")
    if not doc["device_id"] or not doc["batch_id"] or len(doc["batch_id"]) > 128:
        raise MalformedSealedBatchError("header has an empty or oversized id")
    if doc["seq"] < 1 or doc["end_ms"] < doc["start_ms"] or doc["body_size"] < 0:
        raise MalformedSealedBatchError("header has an impossible sequence, time range or size")
    counts = doc["counts"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
        raise MalformedSealedBatchError("header counts are not integers")
    integers = [doc[n] for n, kind in _REQUIRED_FIELDS.items() if kind is int]
    if not all(_INT64_MIN <= v <= _INT64_MAX for v in integers + list(counts.values())):
        raise MalformedSealedBatchError("header has an integer outside the signed 64-bit range")
    if not all(isinstance(a, str) for a in doc["app_ids"]):
        raise MalformedSealedBatchError("header app_ids are not strings")
    return doc


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
            f"{sealed.header['dataset_key_id']!r}; wrong key, or the batch was altered)"
        ) from exc
    if len(body) != sealed.header["body_size"]:
        raise BatchDecryptionError(
            f"batch {sealed.batch_id}: body is {len(body)} bytes, header says "
            f"{sealed.header['body_size']}"
        )
    return body


# ----------------------------------------------------------------- key files


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


def write_dataset_keypair(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Create ``NAME.key`` (0600, never overwritten) and ``NAME.pub``; return both paths.

    Raises :class:`SealedBatchError` if the key exists or a file cannot be written.
    """
    key = X25519PrivateKey.generate()
    directory = Path(directory)
    private_path = directory / f"{name}.key"
    public_path = directory / f"{name}.pub"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        public_path.write_text(dataset_public_b64(key) + "\n")
    except FileExistsError as exc:
        raise SealedBatchError(f"{private_path} exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise SealedBatchError(f"cannot write dataset key {name!r}: {exc.strerror or exc}") from exc
    return private_path, public_path


def load_dataset_private_key(path: str | os.PathLike[str]) -> X25519PrivateKey:
    """Read a dataset private key file; raises :class:`SealedBatchError` with the reason."""
    try:
        data = Path(path).read_bytes()[: 16 * 1024]
        key = serialization.load_pem_private_key(data, password=None)
    except OSError as exc:
        raise SealedBatchError(f"cannot read dataset key {path}: {exc.strerror or exc}") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SealedBatchError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, X25519PrivateKey):
        raise SealedBatchError(f"{path} is not an X25519 dataset key")
    return key


def ed25519_from_b64(b64: str) -> Ed25519PublicKey:
    """A device's Ed25519 public key from raw base64 (the enrollment form)."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(b64, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise MalformedSealedBatchError(f"not an Ed25519 public key: {exc}") from exc
