"""The sink interface: where finished batches go.

This module owns the ``Sink`` protocol and the sinks' exception. A sink takes
a ``Batch`` (plaintext header + body, see ``agent.pipeline.batch``) and makes
it durable or hands it on; it never looks inside the body and never logs
captured content (only batch ids, sequence numbers and sizes).

Exceptions::

    SinkError        every error raised by agent.sinks (OS errors are wrapped)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from agent.pipeline.batch import Batch


class SinkError(Exception):
    """A sink could not take a batch; the batch was not written."""


@runtime_checkable
class Sink(Protocol):
    def write(self, batch: Batch) -> None:
        """Take one batch; raises ``SinkError`` when it could not."""
        ...
