"""The collector's configuration: typed values built once at the entry point.

:class:`StorageConfig` says where and how the embedded store keeps its data,
:class:`CollectorConfig` everything the HTTP app needs (store, grant key,
clock, body limits, :class:`Admission` bounds), :class:`ServeConfig` what
``overt collector serve`` adds (address, policies to load,
:class:`ConnectionLimits`). Nothing here reads the environment or the disk;
:mod:`collector.cli` does that and builds these objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.web.config import AdminPagesConfig
from overt.wire.sealed import MAX_SEALED_BYTES

#: The collector's clock: an aware UTC datetime. Injected so tests never sleep.
Clock = Callable[[], datetime]

DEFAULT_PORT = 8473


def system_clock() -> datetime:
    return datetime.now(UTC)


def to_ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return int(value.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def iso(value_ms: int | None) -> str | None:
    """The wire form of a stored time: ISO 8601 UTC with a ``Z``, or ``None``."""
    if value_ms is None:
        return None
    return from_ms(value_ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where the embedded store (SQLite + blob segments) keeps its data.

    ``exclusive`` is for the serving collector: it locks the data directory,
    repairs the blob segments after a crash and may write batches. Tools that
    work beside a running collector (``overt collector enroll-token``, export)
    open it non-exclusive: metadata reads and writes only.
    """

    data_dir: Path
    exclusive: bool = True
    #: A segment file is closed and a new one started past this size.
    segment_max_bytes: int = 256 * 2**20
    #: At most this many writes share one fsync and one SQLite commit.
    max_group: int = 512


@dataclass(frozen=True, slots=True)
class Limits:
    """Request body limits, enforced before a body is read."""

    sealed_batch_bytes: int = MAX_SEALED_BYTES
    json_bytes: int = 64 * 1024
    policy_bytes: int = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``burst`` requests at once, refilled at ``per_second``."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and self.burst >= 1):
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")


#: ``overt collector serve``'s defaults (``docs/PROTOCOL.md``, "Bounds").
DEFAULT_DEVICE_RATE = RateLimit(per_second=50.0, burst=200)
DEFAULT_ADDRESS_RATE = RateLimit(per_second=20.0, burst=100)


@dataclass(frozen=True, slots=True)
class Admission:
    """Which requests the app starts at all; each refusal comes before the body is read.

    ``None`` turns a rate limit off. A device's rate counts its authenticated
    requests; an address's rate counts every request from it that is not an
    authenticated device's or admin's (strangers, enrollment, the admin
    pages, every failed authentication), and while an address is over its
    rate every request from it waits, a device's too.
    """

    #: Requests in flight at once; one more gets 503 with ``Retry-After``.
    max_requests: int = 64
    #: Requests in flight at once from one device; one more gets 429 with ``Retry-After``.
    max_device_requests: int = 4
    device_rate: RateLimit | None = DEFAULT_DEVICE_RATE
    address_rate: RateLimit | None = DEFAULT_ADDRESS_RATE
    #: A body that sends nothing for this long is answered 408 and its connection closed.
    body_idle_seconds: float = 30.0
    #: Most devices and addresses whose buckets are remembered (the idlest go first).
    max_tracked: int = 100_000


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Everything :func:`collector.api.create_app` needs."""

    storage: StorageConfig
    #: The admin Ed25519 key that signs exemption grants (``--grant-key``).
    grant_key: Ed25519PrivateKey | None = None
    clock: Clock = system_clock
    limits: Limits = field(default_factory=Limits)
    admission: Admission = field(default_factory=Admission)
    #: How long an enrollment token lives unless the admin says otherwise.
    enrollment_token_minutes: int = 60
    #: How long a device's key and revocation state may be cached in memory.
    device_cache_seconds: float = 30.0
    #: Threads that verify batch uploads (signatures, hashes) beside the event
    #: loop; 0 verifies on the event loop itself.
    verify_threads: int = 1
    #: The admin web pages (``collector.web``), mounted under ``/admin/`` when set.
    admin_pages: AdminPagesConfig | None = None


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one serving process holds open for its clients (``collector.connections``)."""

    #: Open connections at most, lowered to what the file limit leaves room for. At the
    #: cap a new connection closes the one that has waited longest for a request head.
    max_connections: int = 1000
    #: From connecting (or from the first byte of a kept-alive connection's next
    #: request) to the end of the request head; past it the connection is closed.
    header_timeout_seconds: float = 10.0
    #: An idle kept-alive connection is closed after this long.
    keep_alive_seconds: int = 15


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """``overt collector serve``: the app's configuration plus where to listen."""

    collector: CollectorConfig
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: Signed policy files stored at start (as ``PUT /v1/admin/policy`` would).
    policy_files: tuple[Path, ...] = ()
    log_level: str = "info"
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
