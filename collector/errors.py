"""Every way the collector refuses a request or fails to do its work.

One base class, :class:`CollectorError`. Each class carries ``code``, the
short stable string sent as ``{"error": code}`` on the wire (see
``docs/PROTOCOL.md``); the HTTP layer maps the classes to status codes and
nothing below it knows about HTTP::

    CollectorError
    ├── ConfigError                 a bad data directory, key file or option
    ├── StorageError                the store cannot read or write (wraps
    │   │                           sqlite3 and OSError)
    │   ├── CorruptStoreError       stored bytes fail their checksum, or the
    │   │                           schema is of an unknown version
    │   └── StoreLockedError        another collector serves this data dir
    ├── UnauthorizedError           any authentication failure (one 401)
    │   └── EnrollmentTokenError    unknown, used or expired enrollment token
    ├── NotFoundError               no such exemption request, device, policy
    ├── ConflictError               the request contradicts what is stored
    │   ├── DeviceExistsError       the device id is already enrolled
    │   ├── SequenceConflictError   same (device, seq), different bytes
    │   ├── AlreadyDecidedError     the exemption request was decided before
    │   ├── PolicyVersionError      not above a stored overlapping policy
    │   └── GrantKeyError           no grant key, or the policy does not let
    │                               it grant this category
    ├── InvalidRequestError         malformed input (a 422)
    ├── PayloadTooLargeError        a body over its limit (a 413)
    ├── BodyTimeoutError            the body stopped arriving (a 408)
    ├── RetryLaterError             refused for now; carries ``retry_after``
    │   ├── RateLimitedError        over a device's or an address's rate (429)
    │   └── OverloadedError         too many requests in flight (503)
    └── AdminClientError            ``overt admin``: the collector is
                                    unreachable or refused the request

Foreign exceptions (``sqlite3``, ``OSError``, ``policies`` errors, pydantic)
are wrapped where they enter the package, with the original as
``__cause__``. Messages name ids and counts, never captured content.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error raised by ``collector``."""

    code = "collector_error"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail or self.__class__.__doc__ or self.code)
        self.detail = detail
        if code is not None:
            self.code = code


class ConfigError(CollectorError):
    """The collector cannot start with this configuration."""

    code = "config_error"


class StorageError(CollectorError):
    """The store cannot read or write."""

    code = "storage_error"


class CorruptStoreError(StorageError):
    """Stored data fails its checksum or has an unknown schema version."""

    code = "corrupt_store"


class StoreLockedError(StorageError):
    """Another collector process already serves this data directory."""

    code = "store_locked"


class UnauthorizedError(CollectorError):
    """The caller could not be authenticated. The reason is logged, never sent."""

    code = "unauthorized"


class EnrollmentTokenError(UnauthorizedError):
    """The enrollment token is unknown, already used or expired."""


class NotFoundError(CollectorError):
    """The thing named does not exist."""

    code = "not_found"


class ConflictError(CollectorError):
    """The request contradicts what is stored."""

    code = "conflict"


class DeviceExistsError(ConflictError):
    """The device id is already enrolled."""

    code = "device_exists"


class SequenceConflictError(ConflictError):
    """A batch with this (device, seq) is stored with other bytes."""

    code = "sequence_conflict"


class AlreadyDecidedError(ConflictError):
    """The exemption request was approved or denied before."""

    code = "already_decided"


class PolicyVersionError(ConflictError):
    """A stored policy for an overlapping scope has this version or a higher one."""

    code = "policy_version"


class GrantKeyError(ConflictError):
    """The collector has no grant key, or the policy does not authorise it."""

    code = "grant_key_not_authorised"


class InvalidRequestError(CollectorError):
    """The request is malformed."""

    code = "invalid_request"


class PayloadTooLargeError(CollectorError):
    """The request body is over the limit for its endpoint."""

    code = "too_large"


class BodyTimeoutError(CollectorError):
    """The request body stopped arriving before it was complete."""

    code = "body_timeout"


class RetryLaterError(CollectorError):
    """Refused for now; the same request may succeed after ``retry_after`` seconds."""

    code = "retry_later"

    def __init__(self, detail: str, retry_after: int, *, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = max(1, retry_after)


class RateLimitedError(RetryLaterError):
    """The device or the client address sent more requests than its rate allows."""

    code = "rate_limited"


class OverloadedError(RetryLaterError):
    """The collector has as many requests in flight as it will take."""

    code = "overloaded"


class AdminClientError(CollectorError):
    """``overt admin``: the collector is unreachable or refused the request."""

    code = "admin_client_error"
