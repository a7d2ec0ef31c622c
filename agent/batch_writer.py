"""Finished batches on their way to the sink: numbered, written in order, held
while the sink refuses them.

This module owns the hand-off of a finished batch from capture to the sink
and what happens when it fails. Each batch's sequence number is recorded as
used (``LocalState.advance_sequence``) just before the batch goes to the
sink, so a number is taken only by a batch on its way there: a crash may
skip one, never reuse one. If recording the number or writing the batch
fails — a full disk, a full spool, an I/O error anywhere in seal, spool and
ledger — the batch stays held (nothing is dropped) with every later one,
the failure is described in words (:attr:`BatchWriter.problem`), and the
held batches are tried again every few seconds. At exit, batches the sink
still refuses are given up: their numbers are recorded as used if the disk
allows it, so the next start sees them missing from the spool.

It does not decide what a failure means for capture: :class:`BatchWriter`
reports when writes start failing and when they work again
(:class:`WriteChange`), and capture stops and resumes on that.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from agent.local_state import LocalState, LocalStateError
from agent.sinks.base import Sink, SinkError, SpoolFullError
from overt.wire.batch import Batch

log = logging.getLogger(__name__)

#: How long to wait before trying again to write batches the sink refused.
WRITE_RETRY_S = 5.0


class WriteChange(Enum):
    """What a write did to the writer's state."""

    #: Written, or still held as before.
    NONE = "none"
    #: Writes have just started failing: the batches are held.
    FAILING = "failing"
    #: All held batches are written: writes work again.
    RECOVERED = "recovered"


class BatchWriter:
    """Writes finished batches to ``sink`` in order; holds them while it refuses."""

    def __init__(
        self,
        sink: Sink,
        local: LocalState,
        clock: Callable[[], float],
        *,
        retry_s: float = WRITE_RETRY_S,
    ) -> None:
        self._sink = sink
        self._local = local
        self._clock = clock
        self._retry_s = retry_s
        #: Finished batches the sink has not taken yet, oldest first.
        self.held: deque[Batch] = deque()
        self.written = 0
        #: Why the held batches cannot be written; None while writes succeed.
        self.problem: str | None = None
        self._next_retry = 0.0

    def write(self, batch: Batch) -> WriteChange:
        """Hold ``batch`` and write what is held, unless writes are failing:
        then it waits with the others for the next retry."""
        self.held.append(batch)
        if self.problem is None:
            return self.write_held(self._clock())
        return WriteChange.NONE

    def retry_due(self, now: float) -> bool:
        return bool(self.held) and now >= self._next_retry

    def write_held(self, now: float) -> WriteChange:
        """Write held batches in order; on failure keep them (see the module docstring)."""
        while self.held:
            batch = self.held[0]
            try:
                self._local.advance_sequence(batch.header.seq)
                self._sink.write(batch)
            except Exception as exc:
                return self._failed(batch, exc, now)
            self.held.popleft()
            self.written += 1
            log.info("batch seq %d written: %d bytes", batch.header.seq, batch.header.body_size)
        if self.problem is None:
            return WriteChange.NONE
        log.info("batches can be written again; capture resumes")
        self.problem = None
        return WriteChange.RECOVERED

    def drop_since(self, since_ms: int) -> int:
        """Drop the held batches that end at or after ``since_ms``; how many."""
        before = len(self.held)
        self.held = deque(b for b in self.held if b.header.end_ms < since_ms)
        return before - len(self.held)

    def give_up(self) -> None:
        """At exit: the sink refused the held batches to the end (a full disk,
        say), so they die with the process. Their numbers are recorded as used
        if the disk still allows it, so that the next start sees them missing
        from the spool and writes a gap marker; the log says which they were."""
        if not self.held:
            return
        first, last = self.held[0].header.seq, self.held[-1].header.seq
        try:
            self._local.advance_sequence(last)
        except LocalStateError as exc:
            log.error("the sequence number of the lost batches cannot be recorded: %s", exc)
        log.error(
            "%d batches (seq %d to %d) could not be written before exit and are lost",
            len(self.held),
            first,
            last,
        )

    def _failed(self, batch: Batch, exc: Exception, now: float) -> WriteChange:
        self._next_retry = now + self._retry_s
        problem = _write_problem(exc, self._local.directory)
        if not isinstance(exc, (SinkError, LocalStateError, OSError)):
            log.exception("batch seq %d: the sink failed unexpectedly", batch.header.seq)
        if problem == self.problem:
            return WriteChange.NONE
        first = self.problem is None
        self.problem = problem
        if first:
            log.error(
                "batch seq %d could not be written (%s); capture stops, %d batches held",
                batch.header.seq,
                type(exc).__name__,
                len(self.held),
            )
            return WriteChange.FAILING
        log.error("batch seq %d still cannot be written (%s)", batch.header.seq, type(exc).__name__)
        return WriteChange.NONE


def _write_problem(exc: BaseException, state_dir: Path) -> str:
    """Why batches cannot be written, in words for the status's ``problem``."""
    if _disk_full(exc):
        return (
            f"the disk is full: captured batches cannot be stored in {state_dir}; "
            "capture resumes by itself once space is freed"
        )
    if isinstance(exc, SpoolFullError):
        return f"the spool is full ({exc}); capture resumes once uploads make room"
    if isinstance(exc, (SinkError, LocalStateError, OSError)):
        return f"batches cannot be written: {exc}"
    return f"batches cannot be written: {type(exc).__name__} (the agent's log says more)"


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the disk is full."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SpoolFullError):
            return seen.reason == "disk"
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__
    return False
