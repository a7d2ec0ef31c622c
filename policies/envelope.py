"""The signed-file envelope (DSSE v1 style): encode, decode, sign, check signatures.

Wire format, UTF-8 JSON, written compactly on one line (shown spread out here)::

    {"payloadType": "<media type>",
     "payload": "<standard, canonical base64 of the payload bytes>",
     "signatures": [{"keyid": "<hex sha-256 of the raw key>", "sig": "<base64>"}]}

Each signature is Ed25519 over ``PAE(payloadType, payload)`` exactly as DSSE v1
defines it, so the payload type is signed too and a grant can never be passed
off as a policy::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

This module owns only that format. It takes bytes and returns values or raises
:class:`~policies.errors.PolicyError`; it never parses a payload (that happens
in ``policies.verify``, after the signatures were checked) and never touches the
disk. Sizes are checked before anything else is done with the input.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.errors import (
    BadSignatureError,
    MalformedError,
    MissingSignatureError,
    OversizedError,
)
from policies.keys import ed25519_public_key, keyid_of
from policies.model import PublicKey

#: Largest signed policy file accepted.
MAX_POLICY_BYTES = 1024 * 1024
#: Largest signed grant file accepted.
MAX_GRANT_BYTES = 64 * 1024
#: More signatures than this is not a real file; it bounds verification work.
MAX_SIGNATURES = 32

_ED25519_SIGNATURE_BYTES = 64
_ENVELOPE_FIELDS = frozenset({"payloadType", "payload", "signatures"})
_SIGNATURE_FIELDS = frozenset({"keyid", "sig"})


@dataclass(frozen=True, slots=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded envelope. Nothing about it is trusted yet."""

    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        document = {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }
        # Compact, no trailing newline: every byte of a signed file carries
        # meaning, so any single changed byte is detected (see the tests).
        return json.dumps(document, separators=(",", ":")).encode("utf-8")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what each signature covers."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def check_size(data: bytes, limit: int, what: str = "input") -> None:
    if len(data) > limit:
        raise OversizedError(f"{what} is larger than the {limit}-byte limit")


def read_limited(stream: IO[bytes], limit: int, what: str = "input") -> bytes:
    """Read a whole stream, but never more than ``limit + 1`` bytes of it.

    Raises :class:`OversizedError` if the stream holds more than ``limit``
    bytes, having read at most one byte past the limit.
    """
    chunks: list[bytes] = []
    remaining = limit + 1
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    data = b"".join(chunks)
    check_size(data, limit, what)
    return data


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise MalformedError(f"{name} is not valid JSON")


def strict_json(data: bytes, what: str) -> Any:
    """Parse UTF-8 JSON, refusing duplicate keys and NaN/Infinity.

    Duplicate keys are refused because two parsers may pick different values
    for them; a signed file must mean one thing.
    """
    try:
        text = data.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except MalformedError as exc:
        raise MalformedError(f"{what}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise MalformedError(f"{what} is not UTF-8") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise MalformedError(f"{what} is not valid JSON: {exc}") from exc


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError(f"envelope {what} must be a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"envelope {what} is not valid base64") from exc
    # Refuse non-canonical encodings (set padding bits, say): one value, one text.
    if base64.b64encode(decoded).decode("ascii") != value:
        raise MalformedError(f"envelope {what} is not canonical base64")
    return decoded


def parse_envelope(data: bytes, limit: int) -> Envelope:
    """Decode an envelope from untrusted bytes (size first, then shape).

    A missing ``signatures`` field decodes as no signatures; whether that is
    acceptable is the verifier's decision (it is not).
    """
    check_size(data, limit, "signed file")
    document = strict_json(data, "signed file")
    if not isinstance(document, dict):
        raise MalformedError("signed file is not a JSON object")
    unknown = set(document) - _ENVELOPE_FIELDS
    if unknown:
        raise MalformedError(f"envelope has unknown fields: {', '.join(sorted(unknown))}")
    payload_type = document.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise MalformedError("envelope payloadType must be a non-empty string")
    if "payload" not in document:
        raise MalformedError("envelope has no payload")
    payload = _b64(document["payload"], "payload")
    raw_signatures = document.get("signatures", [])
    if not isinstance(raw_signatures, list):
        raise MalformedError("envelope signatures must be a list")
    if len(raw_signatures) > MAX_SIGNATURES:
        raise MalformedError(f"envelope has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for index, item in enumerate(raw_signatures):
        if not isinstance(item, dict) or set(item) != _SIGNATURE_FIELDS:
            raise MalformedError(f"envelope signature {index} must have exactly keyid and sig")
        keyid = item["keyid"]
        if not isinstance(keyid, str):
            raise MalformedError(f"envelope signature {index} keyid must be a string")
        signatures.append(Signature(keyid=keyid, sig=_b64(item["sig"], f"signature {index}")))
    return Envelope(payload_type=payload_type, payload=payload, signatures=tuple(signatures))


def sign_envelope(
    payload: bytes, payload_type: str, private_keys: Sequence[Ed25519PrivateKey]
) -> bytes:
    """Sign ``payload`` as ``payload_type`` with each key; return the envelope bytes."""
    if not private_keys:
        raise ValueError("at least one signing key is needed")
    keyids = [keyid_of(k) for k in private_keys]
    if len(set(keyids)) != len(keyids):
        raise ValueError("the same signing key was given twice")
    message = pae(payload_type, payload)
    signatures = tuple(
        Signature(keyid=kid, sig=key.sign(message))
        for kid, key in zip(keyids, private_keys, strict=True)
    )
    return Envelope(payload_type, payload, signatures).to_json()


def verified_keyids(envelope: Envelope, keys: Iterable[PublicKey]) -> frozenset[str]:
    """The distinct ids of ``keys`` that made a valid signature on ``envelope``.

    Signatures whose key id is not among ``keys`` are ignored (they may belong
    to another signer set, e.g. during a rotation). A signature that claims one
    of ``keys`` but does not verify raises :class:`BadSignatureError`: the
    payload or its type was changed after signing. An envelope with no
    signatures at all raises :class:`MissingSignatureError`.
    """
    if not envelope.signatures:
        raise MissingSignatureError("the file is not signed (no signatures)")
    by_id = {k.keyid: k for k in keys}
    message = pae(envelope.payload_type, envelope.payload)
    valid: set[str] = set()
    for signature in envelope.signatures:
        key = by_id.get(signature.keyid)
        if key is None:
            continue
        try:
            if len(signature.sig) != _ED25519_SIGNATURE_BYTES:
                raise InvalidSignature
            ed25519_public_key(key).verify(signature.sig, message)
        except InvalidSignature as exc:
            raise BadSignatureError(
                f"signature by key {signature.keyid[:16]}… does not verify: the payload "
                "or its type was changed after signing"
            ) from exc
        valid.add(signature.keyid)
    return frozenset(valid)
