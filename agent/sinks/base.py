"""The sink interface: where finished batches go, and the sinks' exceptions.

This module owns the ``Sink`` protocol and the exception tree of
``agent.sinks``. A sink takes a ``Batch`` (plaintext header + body, see
``overt.wire.body``) and makes it durable or hands it on; it never looks
inside the body and never logs captured content (only batch ids, sequence
numbers and sizes).

Exceptions (OS, SQLite and ``cryptography`` errors are wrapped at the
boundary, with the original as ``__cause__``)::

    SinkError                 every error raised by agent.sinks; the batch was
    │                         not written (the agent holds it and retries)
    ├── NotConfiguredError    no dataset key yet: the sealing sink refuses to write
    ├── SealError             the batch cannot be sealed (its header names another
    │                         dataset key, its body size is wrong, it is too large)
    └── SpoolError            the spool's database cannot be used (I/O error,
        │                     read-only file, locked, not a spool)
        ├── SpoolFullError    the byte budget (``reason == "budget"``) or the disk
        │                     (``reason == "disk"``) is full; nothing was written
        └── SpoolConflictError  a sequence number already spooled for another batch
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from overt.wire.batch import Batch


class SinkError(Exception):
    """A sink could not take a batch; the batch was not written."""


class NotConfiguredError(SinkError):
    """The sink has no dataset key (no policy yet): it refuses to write."""


class SealError(SinkError):
    """The batch cannot be sealed as it is."""


class SpoolError(SinkError):
    """The spool's database cannot be read or written."""


class SpoolFullError(SpoolError):
    """The spool's byte budget or the disk under it is full; nothing was written.

    ``reason`` is ``"budget"`` (the policy's ``spool_max_bytes`` would be
    exceeded) or ``"disk"`` (the file system is out of space). Both clear by
    themselves once uploads free space, so the agent retries.
    """

    def __init__(self, message: str, reason: Literal["budget", "disk"]) -> None:
        super().__init__(message)
        self.reason = reason


class SpoolConflictError(SpoolError):
    """The sequence number is already spooled, uploaded or discarded for another batch."""


@runtime_checkable
class Sink(Protocol):
    def write(self, batch: Batch) -> None:
        """Take one batch; raises ``SinkError`` when it could not."""
        ...
