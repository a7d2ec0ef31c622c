"""The exception tree of ``overt export`` (see :mod:`collector.export`).

::

    ExportError                  every error raised by the exporter
    ├── DatasetKeyError          the dataset private key cannot be read or used
    ├── OutputError              OUT exists and is not empty, or cannot be written
    ├── StoreReadError           the collector's data directory cannot be read
    └── BatchRejected            one stored batch failed verification, decryption,
                                 decoding or validation (reported and skipped,
                                 never raised out of ``run.export_batches``)

Foreign exceptions (``overt.wire.sealed.SealedBatchError``,
``overt.wire.errors.FormatError``, ``policies.errors.KeyFileError``,
``OSError``, the collector's storage errors) are wrapped where they cross
into the exporter.
"""

from __future__ import annotations


class ExportError(Exception):
    """Base of every error raised by ``overt export``."""


class DatasetKeyError(ExportError):
    """The dataset private key file is missing, unreadable or not an X25519 key."""


class OutputError(ExportError):
    """The output directory is not usable: not empty, or not writable."""


class StoreReadError(ExportError):
    """The collector's data directory cannot be opened or read.

    The collector's own ``collector.errors.StorageError`` is wrapped in it."""


class BatchRejected(ExportError):
    """A stored batch that is not exported; ``reason`` is a short stable label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
