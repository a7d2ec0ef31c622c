"""Every way a policy, a grant, a key file or the trust store can be refused.

One base class, :class:`PolicyError`; callers that only need "accepted or
not" catch that. Each leaf names one failure, so a test or a tray message can
say exactly why an update was refused; its ``label`` ("bad signature",
"rollback", ...) is the short, stable name shown to people::

    PolicyError
    ├── OversizedError              more bytes than the limit for the format
    ├── MalformedError              not JSON, truncated, bad base64, duplicate
    │                               JSON keys, wrong shape, schema-invalid
    ├── UnknownPayloadTypeError     payloadType is not the one expected
    ├── SignatureError              the signatures do not establish trust
    │   ├── MissingSignatureError   the envelope carries no signature at all
    │   ├── BadSignatureError       a trusted key's signature does not verify
    │   │                           (payload or payload type changed)
    │   ├── UntrustedKeyError       no signature from any trusted key
    │   ├── ThresholdNotMetError    fewer distinct trusted keys than required
    │   ├── RotationError           new signers not approved by a threshold
    │   │                           of the new set
    │   └── CategoryNotAllowedError the admin key may not grant this category
    ├── FreshnessError              the file is not valid at ``now``
    │   ├── ExpiredError            ``now`` is at or after ``expires``
    │   └── NotYetValidError        ``issued_at`` is in the future (beyond skew)
    ├── VersionError                the version does not move forward
    │   ├── RollbackError           lower than the version held
    │   └── VersionReusedError      same version as held, different bytes
    ├── ScopeMismatchError          another tenant, device group, device or user
    ├── UnreadableFileError         a file to verify cannot be opened or read
    ├── KeyFileError                a key file is missing, unreadable or of the
    │                               wrong kind, or would be overwritten
    └── StoreError                  the trust store cannot be read or written
        └── CorruptStateError       persisted state is unreadable or inconsistent

Foreign exceptions (``json``, ``binascii``, ``pydantic``, ``cryptography``,
``OSError``) are wrapped at the boundary, with the original as ``__cause__``.
"""

from __future__ import annotations


class PolicyError(Exception):
    """Base of every error raised by ``policies``."""

    label = "policy error"


class OversizedError(PolicyError):
    """The input is larger than the limit for its format."""

    label = "oversized"


class MalformedError(PolicyError):
    """The envelope or payload cannot be read: not JSON, bad base64, wrong shape,
    or a payload that does not validate against the model."""

    label = "malformed"


class UnknownPayloadTypeError(PolicyError):
    """The envelope's (signed) payload type is not the one expected."""

    label = "unknown payload type"


class SignatureError(PolicyError):
    """The signatures on an envelope do not establish trust."""

    label = "signature not trusted"


class MissingSignatureError(SignatureError):
    """The envelope has no signatures."""

    label = "missing signature"


class BadSignatureError(SignatureError):
    """A signature made with a trusted key id does not verify over the payload."""

    label = "bad signature"


class UntrustedKeyError(SignatureError):
    """No signature was made by a trusted key."""

    label = "untrusted key"


class ThresholdNotMetError(SignatureError):
    """Fewer distinct trusted keys signed than the threshold requires."""

    label = "threshold not met"


class RotationError(SignatureError):
    """A policy names new signers but is not signed by a threshold of them."""

    label = "rotation not authorised"


class CategoryNotAllowedError(SignatureError):
    """A grant is signed by an admin key that may not grant its category."""

    label = "category not allowed"


class FreshnessError(PolicyError):
    """The policy or grant is not valid at the time it is checked."""

    label = "not valid now"


class ExpiredError(FreshnessError):
    """``now`` is at or after ``expires``."""

    label = "expired"


class NotYetValidError(FreshnessError):
    """``issued_at`` lies further in the future than the allowed clock skew."""

    label = "not yet valid"


class VersionError(PolicyError):
    """The policy version does not move forward from the one held."""

    label = "version error"


class RollbackError(VersionError):
    """The policy version is lower than the version already accepted."""

    label = "rollback"


class VersionReusedError(VersionError):
    """The policy has the accepted version number but different payload bytes."""

    label = "same version, different content"


class ScopeMismatchError(PolicyError):
    """The policy or grant is for another tenant, device group, device or user."""

    label = "scope mismatch"


class UnreadableFileError(PolicyError):
    """A file to verify or sign cannot be opened or read."""

    label = "unreadable file"


class KeyFileError(PolicyError):
    """A key file is missing, unreadable, of the wrong kind, or already exists."""

    label = "key file error"


class StoreError(PolicyError):
    """The trust store cannot be read or written."""

    label = "trust store error"


class CorruptStateError(StoreError):
    """The persisted trust state is unreadable or inconsistent with its policy."""

    label = "corrupt trust state"
