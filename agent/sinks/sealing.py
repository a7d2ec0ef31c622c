"""The sealing sink: seal each finished batch, then spool it.

This module owns the step between the pipeline and the spool. ``write(batch)``
encrypts ``batch.body`` to the dataset public key with the batch header's
canonical JSON bound through HPKE's ``info``, has the device key sign header +
ciphertext (``overt.wire.sealed.seal_batch``), and puts the sealed bytes in the
:class:`~agent.sinks.spool.Spool`, held for the policy's review window. The
plaintext body only ever exists in memory: nothing unsealed reaches the disk.

Public API::

    SealingSink(spool, device_key, clock)
        spool        agent.sinks.spool.Spool
        device_key   the device's Ed25519 private key
        clock        () -> float, epoch seconds (the agent's clock)
    .configure(dataset_key_id, dataset_public_key, review_window_minutes, spool_max_bytes)
    .configure_from_policy(policy)     the same, from a verified policies.model.Policy
    .configured -> bool
    .write(batch)                      the agent.sinks.base.Sink protocol

The agent calls ``configure`` on every policy change. Until the first call,
``write`` raises ``NotConfiguredError`` (a ``SinkError``: the agent holds the
batch and retries). A batch's header must name a dataset key this sink was
configured with: the current one, or one configured earlier in this process
(a batch closed out at a policy change still names the key of the policy it
was captured under, and may reach the sink after the new key was configured;
it is sealed to the key its header names). A header naming any other key, or
with a ``body_size`` that is not the body's length, raises ``SealError``.

Hold: a batch becomes ready for upload at ``max(now, batch end) + review
window``. Budget: ``configure`` passes ``spool_max_bytes`` to the spool.

Thread-safety: ``write`` is called from the agent's pipeline thread;
``configure`` may be called from any thread (it swaps one immutable
configuration under a lock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from overt.wire.batch import Batch
from overt.wire.sealed import SealedBatchError, seal_batch
from overt.wire.sealed import dataset_public_key as parse_dataset_key
from policies.model import Policy

from .base import NotConfiguredError, SealError
from .spool import Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SealingConfig:
    """What the sink needs from the policy in force."""

    dataset_key_id: str
    dataset_key: X25519PublicKey
    review_window_minutes: int
    spool_max_bytes: int


class SealingSink:
    """A ``Sink`` that seals batches to the dataset key and spools them."""

    def __init__(
        self, spool: Spool, device_key: Ed25519PrivateKey, clock: Callable[[], float]
    ) -> None:
        self._spool = spool
        self._device_key = device_key
        self._clock = clock
        self._lock = threading.Lock()
        self._config: SealingConfig | None = None
        #: Every dataset key this sink was configured with, by key id.
        self._keys: dict[str, X25519PublicKey] = {}

    @property
    def configured(self) -> bool:
        return self._config is not None

    def configure(
        self,
        dataset_key_id: str,
        dataset_public_key: str | X25519PublicKey,
        review_window_minutes: int,
        spool_max_bytes: int,
    ) -> None:
        """Adopt the policy's dataset key, review window and spool budget.

        ``dataset_public_key`` is the policy's raw base64 form or a key object.
        Raises ``SealError`` for a key that is not an X25519 public key and
        ``ValueError`` for an empty key id or negative numbers.
        """
        if not dataset_key_id:
            raise ValueError("dataset_key_id must not be empty")
        if review_window_minutes < 0 or spool_max_bytes < 0:
            raise ValueError("review window and spool budget must not be negative")
        if isinstance(dataset_public_key, str):
            try:
                key = parse_dataset_key(dataset_public_key)
            except SealedBatchError as exc:
                raise SealError(f"dataset key {dataset_key_id!r}: {exc}") from exc
        else:
            key = dataset_public_key
        config = SealingConfig(dataset_key_id, key, review_window_minutes, spool_max_bytes)
        with self._lock:
            known = self._keys.get(dataset_key_id)
            if known is not None and _raw(known) != _raw(key):
                raise SealError(
                    f"dataset key id {dataset_key_id!r} was configured with another key; "
                    "a key id must name one key"
                )
            self._keys[dataset_key_id] = key
            self._config = config
        self._spool.set_budget(spool_max_bytes)
        log.info(
            "sealing to dataset key %s; review window %d min; spool budget %d bytes",
            dataset_key_id,
            review_window_minutes,
            spool_max_bytes,
        )

    def configure_from_policy(self, policy: Policy) -> None:
        """``configure`` with a verified policy's dataset key, review window and budget."""
        self.configure(
            policy.dataset_key.key_id,
            policy.dataset_key.public_key,
            policy.review_window_minutes,
            policy.spool_max_bytes,
        )

    def write(self, batch: Batch) -> None:
        """Seal ``batch`` and spool it; durable on return. Raises ``SinkError``."""
        with self._lock:
            config = self._config
            key = self._keys.get(batch.header.dataset_key_id)
        header = batch.header
        if config is None:
            raise NotConfiguredError(
                f"batch seq {header.seq}: no dataset key yet (no policy); not written"
            )
        if key is None:
            raise SealError(
                f"batch seq {header.seq} names dataset key {header.dataset_key_id!r}, but the "
                f"policy's is {config.dataset_key_id!r}"
            )
        if header.body_size != len(batch.body):
            raise SealError(
                f"batch seq {header.seq}: header says {header.body_size} body bytes, "
                f"the body has {len(batch.body)}"
            )
        try:
            sealed = seal_batch(header.to_json(), batch.body, key, self._device_key)
        except SealedBatchError as exc:
            raise SealError(f"batch seq {header.seq} cannot be sealed: {exc}") from exc
        now_ms = int(self._clock() * 1000)
        hold_until_ms = max(now_ms, header.end_ms) + config.review_window_minutes * 60_000
        self._spool.put(sealed, now_ms=now_ms, hold_until_ms=hold_until_ms)
        log.debug("sealed and spooled batch seq=%d: %d bytes", header.seq, len(sealed))


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
