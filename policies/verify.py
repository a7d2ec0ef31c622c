"""Policy and grant verification: bytes in, a verified model out, or an error.

This is the trust core. Its functions are pure: they take the signed bytes,
the trusted keys, the state held so far and an explicit ``now``, and they
return verified values (and the new state) or raise one of the errors in
:mod:`policies.errors`. They hold no paths, sockets, threads or clocks; the
trust store (:mod:`policies.store`) persists what they return.

Checks, in order, for a policy (:func:`verify_policy`):

1. size, then envelope shape (:mod:`policies.envelope`);
2. signatures over the raw payload bytes, against the signer set held (the
   caller's pinned keys before the first policy, then whatever the last
   accepted policy rotated to): no signatures, a trusted key's signature not
   verifying, no trusted signer, fewer distinct trusted key ids than the
   threshold are each refused; trusted keys never come from the file;
3. the signed payload type; only then is the payload parsed and validated;
4. rotation: if the policy names ``next_signers`` that differ from the held
   set, a threshold of the new set must also have signed (the TUF root rule);
5. scope (tenant, device group), then version (no rollback, no reuse of a
   version for different bytes), then validity window (not yet valid beyond
   :data:`CLOCK_SKEW`, expired).

Accepting the identical payload again returns the held state unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import pydantic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.envelope import (
    MAX_GRANT_BYTES,
    MAX_POLICY_BYTES,
    Envelope,
    check_size,
    parse_envelope,
    sign_envelope,
    strict_json,
    verified_keyids,
)
from policies.errors import (
    CategoryNotAllowedError,
    ExpiredError,
    MalformedError,
    NotYetValidError,
    RollbackError,
    RotationError,
    ScopeMismatchError,
    ThresholdNotMetError,
    UnknownPayloadTypeError,
    UntrustedKeyError,
    VersionReusedError,
)
from policies.model import (
    GRANT_PAYLOAD_TYPE,
    POLICY_PAYLOAD_TYPE,
    Grant,
    Policy,
    PublicKey,
    SignerSet,
)

#: How far ``issued_at`` may lie in the future before a file is "not yet valid".
CLOCK_SKEW = timedelta(minutes=5)

_M = TypeVar("_M", bound=pydantic.BaseModel)


@dataclass(frozen=True, slots=True)
class DeviceScope:
    """Where the verifying device sits. ``None`` skips that check.

    An agent always passes both; ``None`` exists for IT tooling that checks a
    file without being a device (``overt policy verify`` without
    ``--device-group``).
    """

    tenant: str | None
    group: str | None


@dataclass(frozen=True, slots=True)
class TrustState:
    """What a device holds after accepting a policy. An immutable value.

    ``signers`` is the signer set the next policy must satisfy (after any
    rotation); ``version`` the highest accepted policy version;
    ``payload_sha256`` the hex SHA-256 of that policy's payload bytes;
    ``expires`` when that policy stops being valid.
    """

    signers: SignerSet
    version: int
    payload_sha256: str
    expires: datetime


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


def verify_signatures(envelope: Envelope, signers: SignerSet, what: str) -> frozenset[str]:
    """The distinct trusted key ids that signed ``envelope``, if they meet the threshold.

    Raises :class:`MissingSignatureError`, :class:`BadSignatureError`,
    :class:`UntrustedKeyError` or :class:`ThresholdNotMetError`. Checks
    signatures only: callers also check the payload type and everything else.
    """
    valid = verified_keyids(envelope, signers.keys)
    if not valid:
        raise UntrustedKeyError(f"{what} is not signed by any trusted key")
    if len(valid) < signers.threshold:
        raise ThresholdNotMetError(
            f"{what} is signed by {len(valid)} distinct trusted key(s); "
            f"{signers.threshold} are required"
        )
    return valid


def _require_type(envelope: Envelope, expected: str) -> None:
    if envelope.payload_type != expected:
        raise UnknownPayloadTypeError(f"payload type {envelope.payload_type!r} is not {expected!r}")


def _describe_validation_error(exc: pydantic.ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location}: {first['msg']}{more}"


def _parse(payload: bytes, model: type[_M], what: str) -> _M:
    strict_json(payload, f"{what} payload")  # duplicate keys, NaN, encoding
    try:
        return model.model_validate_json(payload)
    except pydantic.ValidationError as exc:
        raise MalformedError(
            f"{what} payload is invalid at {_describe_validation_error(exc)}"
        ) from exc


def parse_policy_payload(payload: bytes) -> Policy:
    """Validate an UNSIGNED policy document, for IT tooling (``sign``, ``show``).

    An agent never calls this: it calls :func:`verify_policy`.
    """
    check_size(payload, MAX_POLICY_BYTES, "policy")
    return _parse(payload, Policy, "policy")


def _same_signers(a: SignerSet, b: SignerSet) -> bool:
    return a.keyids == b.keyids and a.threshold == b.threshold


def _check_window(issued_at: datetime, expires: datetime, now: datetime, what: str) -> None:
    if issued_at > now + CLOCK_SKEW:
        raise NotYetValidError(f"{what} is not valid until {issued_at.isoformat()}")
    if now >= expires:
        raise ExpiredError(f"{what} expired at {expires.isoformat()}")


def verify_policy(
    data: bytes,
    trusted: SignerSet,
    state: TrustState | None,
    device: DeviceScope,
    now: datetime,
) -> tuple[Policy, TrustState]:
    """Verify a signed policy file and return it with the trust state to hold next.

    ``trusted`` is the pinned signer set, used only while ``state`` is
    ``None`` (before any policy was accepted); afterwards ``state.signers``
    decides. Raises a :class:`~policies.errors.PolicyError` subclass on any
    failure; the caller's state is a value and is never modified.
    """
    _require_aware(now)
    envelope = parse_envelope(data, MAX_POLICY_BYTES)
    signers = trusted if state is None else state.signers
    verify_signatures(envelope, signers, "policy")
    _require_type(envelope, POLICY_PAYLOAD_TYPE)
    policy = _parse(envelope.payload, Policy, "policy")

    next_signers = signers
    if policy.next_signers is not None and not _same_signers(policy.next_signers, signers):
        try:
            verify_signatures(envelope, policy.next_signers, "policy")
        except (UntrustedKeyError, ThresholdNotMetError) as exc:
            raise RotationError(
                f"policy rotates to new signers but is not signed by a threshold "
                f"({policy.next_signers.threshold}) of them: {exc}"
            ) from exc
        next_signers = policy.next_signers

    if device.tenant is not None and device.tenant != policy.scope.tenant:
        raise ScopeMismatchError(
            f"policy is for tenant {policy.scope.tenant!r}, this device is in {device.tenant!r}"
        )
    if device.group is not None and not policy.scope.covers(policy.scope.tenant, device.group):
        raise ScopeMismatchError(
            f"policy is for device groups {', '.join(policy.scope.device_groups)}, "
            f"this device is in {device.group!r}"
        )

    digest = hashlib.sha256(envelope.payload).hexdigest()
    if state is not None:
        if policy.version < state.version:
            raise RollbackError(
                f"policy version {policy.version} is older than the held version {state.version}"
            )
        if policy.version == state.version and digest != state.payload_sha256:
            raise VersionReusedError(
                f"policy version {policy.version} is already held with different content"
            )

    _check_window(policy.issued_at, policy.expires, now, f"policy version {policy.version}")

    if state is not None and policy.version == state.version:
        return policy, state  # the identical payload again: nothing changes
    return policy, TrustState(
        signers=next_signers,
        version=policy.version,
        payload_sha256=digest,
        expires=policy.expires,
    )


def verify_grant(
    data: bytes,
    policy: Policy,
    device_id: str,
    now: datetime,
    user: str | None = None,
) -> Grant:
    """Verify a signed exemption grant against the policy in force.

    The grant must be signed by an admin key listed in ``policy.grant_signers``
    whose categories include the grant's category, be for the policy's tenant
    and for ``device_id`` (and for ``user``, if the grant names one), and be
    within its validity window at ``now``.
    """
    _require_aware(now)
    envelope = parse_envelope(data, MAX_GRANT_BYTES)
    valid = verified_keyids(envelope, policy.grant_signers)
    if not valid:
        raise UntrustedKeyError("grant is not signed by any admin key the policy lists")
    _require_type(envelope, GRANT_PAYLOAD_TYPE)
    grant = _parse(envelope.payload, Grant, "grant")

    allowed = {
        category
        for key in policy.grant_signers
        if key.keyid in valid
        for category in key.categories
    }
    if grant.category not in allowed:
        raise CategoryNotAllowedError(
            f"no admin key that signed this grant may grant the {grant.category.value!r} category"
        )
    if grant.tenant != policy.scope.tenant:
        raise ScopeMismatchError(
            f"grant is for tenant {grant.tenant!r}, the policy for {policy.scope.tenant!r}"
        )
    if grant.device_id != device_id:
        raise ScopeMismatchError(f"grant is for device {grant.device_id!r}, not {device_id!r}")
    if grant.user is not None and grant.user != user:
        raise ScopeMismatchError("grant is for another user")
    _check_window(grant.issued_at, grant.expires, now, f"grant {grant.grant_id}")
    return grant


def sign_policy(policy_bytes: bytes, private_keys: Sequence[Ed25519PrivateKey]) -> bytes:
    """Sign the exact policy bytes with each key; returns the envelope bytes.

    The payload is validated first: an invalid policy is refused with
    :class:`MalformedError` rather than signed.
    """
    parse_policy_payload(policy_bytes)
    return sign_envelope(policy_bytes, POLICY_PAYLOAD_TYPE, private_keys)


def sign_grant(grant: Grant, private_key: Ed25519PrivateKey) -> bytes:
    """Serialise and sign a grant with an admin key; returns the envelope bytes."""
    payload = grant.model_dump_json().encode("utf-8")
    check_size(payload, MAX_GRANT_BYTES, "grant")
    return sign_envelope(payload, GRANT_PAYLOAD_TYPE, [private_key])


def signer_set(keys: Sequence[PublicKey], threshold: int = 1) -> SignerSet:
    """A signer set from public keys, wrapping the model's validation errors."""
    try:
        return SignerSet(keys=tuple(keys), threshold=threshold)
    except pydantic.ValidationError as exc:
        raise MalformedError(f"invalid signer set: {_describe_validation_error(exc)}") from exc
