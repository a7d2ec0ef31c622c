"""A sink that keeps batches in a list, for tests and the pipeline benchmark.

Guarantees nothing after a crash: it holds batches in memory only.
"""

from __future__ import annotations

from overt.wire.batch import Batch


class MemorySink:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def write(self, batch: Batch) -> None:
        self.batches.append(batch)
