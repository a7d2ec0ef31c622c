"""The collector's store as the export's source of batches.

This module owns the one place the export reads the collector: it opens the
embedded store under a data directory beside a running collector
(non-exclusive; nothing is written under it), and turns each stored row
into an :class:`~collector.export.opening.UnopenedBatch` with the device's
enrolled public key, in (device, seq) order. The collector's errors are
wrapped as :class:`~collector.export.errors.StoreReadError`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from collector.errors import CollectorError
from collector.store.protocols import Storage
from overt.wire.sealed import SealedBatchError, ed25519_from_b64

from .errors import StoreReadError
from .opening import UnopenedBatch

log = logging.getLogger(__name__)


class BatchSource(Protocol):
    """Stored batches in (device, seq) order, and how many there are."""

    def count(self) -> int | None: ...

    def batches(self) -> Iterator[UnopenedBatch]: ...

    def close(self) -> None: ...


class CollectorStore:
    """The collector's :class:`collector.store.protocols.Storage` as a :class:`BatchSource`.

    Each device's enrolled public key is looked up once; a device the store
    does not know (or whose key does not parse) gives ``device_key=None``,
    which the exporter reports as ``unknown device``. Batches of revoked
    devices are exported when their signatures verify (they were accepted
    before the revocation). The collector's errors are wrapped as
    :class:`StoreReadError`; a batch whose stored bytes fail their checksum
    is reported as rejected (``corrupt in store``) and the export goes on.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def count(self) -> int | None:
        try:
            return self._storage.count_batches()
        except CollectorError as exc:
            raise StoreReadError(f"cannot count stored batches: {exc}") from exc

    def batches(self) -> Iterator[UnopenedBatch]:
        keys: dict[str, Ed25519PublicKey | None] = {}
        corrupt: list[UnopenedBatch] = []

        def on_corrupt(device_id: str, seq: int, batch_id: str, reason: str) -> None:
            corrupt.append(UnopenedBatch(device_id, seq, batch_id, None, store_problem=reason))

        try:
            for stored in self._storage.iter_batches(on_corrupt=on_corrupt):
                yield from corrupt
                corrupt.clear()
                device = stored.device_id
                if device not in keys:
                    keys[device] = self._device_key(device)
                yield UnopenedBatch(
                    device_id=device,
                    seq=stored.seq,
                    batch_id=stored.batch_id,
                    device_key=keys[device],
                    sealed=stored.sealed,
                )
            yield from corrupt
        except CollectorError as exc:
            raise StoreReadError(f"cannot read stored batches: {exc}") from exc

    def _device_key(self, device_id: str) -> Ed25519PublicKey | None:
        record = self._storage.get_device(device_id)
        if record is None:
            return None
        try:
            return ed25519_from_b64(record.public_key)
        except SealedBatchError:
            log.warning("device %s has an enrolled key that does not parse", device_id)
            return None

    def close(self) -> None:
        try:
            self._storage.close()
        except CollectorError as exc:
            raise StoreReadError(f"cannot close the store: {exc}") from exc


def open_store(data: Path) -> CollectorStore:
    """The collector's embedded store under ``data``, opened beside a running
    collector (non-exclusive); raises :class:`StoreReadError`."""
    from collector.config import StorageConfig
    from collector.store.sqlite import DB_FILE, SQLiteStorage

    if not (data / DB_FILE).is_file():
        raise StoreReadError(f"{data} is not a collector data directory (no {DB_FILE})")
    try:
        return CollectorStore(SQLiteStorage(StorageConfig(data_dir=data, exclusive=False)))
    except CollectorError as exc:
        raise StoreReadError(f"cannot open the store in {data}: {exc}") from exc
