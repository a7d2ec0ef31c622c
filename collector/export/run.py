"""One export run: unopened batches in, a published dataset directory out.

This module owns the run as a whole: :func:`export_batches` takes any
iterable of :class:`~collector.export.opening.UnopenedBatch` (so it is
tested without a collector), opens each one (:mod:`collector.export.opening`),
hands it to the dataset writer (:mod:`collector.export.dataset`) or records
why it was rejected, reports progress, writes ``dataset.json``
(:mod:`collector.export.layout`) and publishes the output directory.

Batches are hostile input: any enrolled device can seal anything to the
dataset key. A batch that fails any check is reported with its reason and
skipped; nothing of it is written, and the export goes on with the others.
The memory an export needs is that of one batch at its limits (its records
and the frames its deltas still need), not of the store. A batch that runs
out of memory all the same is rejected (``out of memory``) and the export
goes on.

Output guarantees: the dataset is built in a hidden sibling directory
(``.OUT.partial-*``) and renamed to ``OUT`` only when complete, every file
and directory fsynced first. ``OUT`` therefore either does not exist or
holds a complete dataset, also after a crash. The ``.partial`` directory is
removed on every way out but success (an error, ``MemoryError``,
``KeyboardInterrupt``); only a process killed outright (``kill -9``, the
kernel's OOM killer) can leave one to delete. An ``OUT`` that exists and is
not empty is refused, never overwritten.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from overt.files import fsync_directory

from .dataset import DatasetCounts, DatasetWriter
from .errors import BatchRejected, OutputError
from .layout import IMAGES, write_manifest
from .opening import UnopenedBatch, open_batch
from .png import PngEncoder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """What to export where; built once at the entry point."""

    out: Path
    #: An idle stretch longer than this (no action) ends a session.
    idle_split_s: float = 300.0
    #: zlib level of the PNG frames (1: fast; higher levels are slower and smaller).
    png_compress_level: int = 1
    #: Threads that compress the PNG frames (0: on the calling thread).
    jobs: int = 0
    #: Where the batches came from, for ``dataset.json``.
    source: str = ""

    def __post_init__(self) -> None:
        if not self.idle_split_s > 0:
            raise ValueError("idle_split_s must be more than 0")
        if not 0 <= self.png_compress_level <= 9:
            raise ValueError("png_compress_level must be 0 to 9")
        if self.jobs < 0:
            raise ValueError("jobs must be 0 or more")


@dataclass(frozen=True, slots=True)
class Rejection:
    """One batch that was not exported, and why (ids and the check, no content)."""

    device_id: str
    seq: int
    batch_id: str
    reason: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "seq": self.seq,
            "batch_id": self.batch_id,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(slots=True)
class ExportSummary(DatasetCounts):
    """What an export did: the dataset's counts, where it went (``out`` is
    None when nothing was exported) and the batches it rejected."""

    out: Path | None = None
    rejected: list[Rejection] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The counts of ``dataset.json``."""
        return {
            "batches": self.batches,
            "sealed_bytes": self.sealed_bytes,
            "events": self.events,
            "actions": self.actions,
            "actions_with_screenshot": self.actions_with_screenshot,
            "frames": self.frames,
            "images": self.images,
            "sessions": self.sessions,
            "rejected": len(self.rejected),
        }

    def lines(self) -> list[str]:
        """The plain summary printed at the end of every export."""
        where = f"into {self.out}" if self.out is not None else "nothing written"
        out = [
            f"exported {self.batches} batches ({self.sealed_bytes / 1e6:.1f} MB sealed), {where}",
            f"  events {self.events}, actions {self.actions} "
            f"({self.actions_with_screenshot} with a screenshot), sessions {self.sessions}",
            f"  frames reassembled {self.frames}, images written {self.images}",
            f"  rejected batches {len(self.rejected)}",
        ]
        out += [
            f"    device {r.device_id} seq {r.seq} batch {r.batch_id}: {r.reason} ({r.detail})"
            for r in self.rejected
        ]
        return out


class Progress(Protocol):
    """Told after every batch; ``close`` once at the end."""

    def update(self, batches: int, sealed_bytes: int) -> None: ...

    def close(self) -> None: ...


def export_batches(
    batches: Iterable[UnopenedBatch],
    dataset_key: X25519PrivateKey,
    config: ExportConfig,
    *,
    clock: Callable[[], float] = time.time,
    progress: Progress | None = None,
) -> ExportSummary:
    """Export ``batches`` (in (device, seq) order) into ``config.out``.

    Returns the summary; ``summary.out`` is None (and ``config.out`` is not
    created) when no batch could be exported. Raises :class:`OutputError`
    when ``config.out`` is not empty or not writable, and lets a
    :class:`~collector.export.errors.StoreReadError` from ``batches`` through;
    in both cases nothing is left at ``config.out``.
    """
    out = Path(config.out)
    _check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from exc
    summary = ExportSummary()
    done = False
    writer: DatasetWriter | None = None
    png = PngEncoder(config.png_compress_level, config.jobs)
    try:
        writer = DatasetWriter(partial, idle_split_ms=round(config.idle_split_s * 1000), png=png)
        seen: set[tuple[str, int]] = set()
        total_bytes = 0
        for number, unopened in enumerate(batches, 1):
            total_bytes += len(unopened.sealed)
            _export_one(unopened, dataset_key, writer, seen, summary)
            if progress is not None:
                progress.update(number, total_bytes)
        writer.close()
        _fill(summary, writer)
        if summary.batches == 0:
            return summary
        _write_manifest(partial, config, summary, writer, dataset_key, clock)
        _publish(partial, out)
        done = True
        summary.out = out
        log.info(
            "export done: %d batches, %d actions, %d images, %d sessions, %d rejected",
            summary.batches,
            summary.actions,
            summary.images,
            summary.sessions,
            len(summary.rejected),
        )
        return summary
    finally:
        try:
            png.close()  # first: no thread may still write into ``partial``
        finally:
            try:
                if progress is not None:
                    progress.close()
            finally:
                if not done:
                    _discard(partial, writer)


def _export_one(
    unopened: UnopenedBatch,
    dataset_key: X25519PrivateKey,
    writer: DatasetWriter,
    seen: set[tuple[str, int]],
    summary: ExportSummary,
) -> None:
    ident = (unopened.device_id, unopened.seq)
    try:
        if ident in seen:
            raise BatchRejected(
                "duplicate", f"device {unopened.device_id} seq {unopened.seq} again"
            )
        writer.add(open_batch(unopened, dataset_key))
        seen.add(ident)
    except BatchRejected as exc:
        _reject(unopened, exc.reason, exc.detail, writer, summary)
    except MemoryError:
        # Past the limits this should not happen; the batch's objects are
        # freed with the exception, and the writer undid what it wrote.
        _reject(unopened, "out of memory", f"batch {unopened.batch_id}", writer, summary)


def _reject(
    unopened: UnopenedBatch,
    reason: str,
    detail: str,
    writer: DatasetWriter,
    summary: ExportSummary,
) -> None:
    log.info(  # listed in the summary and dataset.json; not a warning twice over
        "batch rejected: device %s seq %d batch %s: %s",
        unopened.device_id,
        unopened.seq,
        unopened.batch_id,
        reason,
    )
    summary.rejected.append(
        Rejection(unopened.device_id, unopened.seq, unopened.batch_id, reason, detail)
    )
    if reason != "duplicate":
        writer.skip(unopened.device_id)


def _fill(summary: ExportSummary, writer: DatasetWriter) -> None:
    for counted in fields(DatasetCounts):
        setattr(summary, counted.name, getattr(writer.counts, counted.name))


def _write_manifest(
    root: Path,
    config: ExportConfig,
    summary: ExportSummary,
    writer: DatasetWriter,
    dataset_key: X25519PrivateKey,
    clock: Callable[[], float],
) -> None:
    write_manifest(
        root,
        created_ms=round(clock() * 1000),
        source=config.source,
        key_ids=writer.counts.dataset_key_ids,
        public_key=dataset_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        ),
        options={
            "idle_split_seconds": config.idle_split_s,
            "images": "referenced",
            "png_compress_level": config.png_compress_level,
        },
        counts=summary.counts(),
        rejected=[r.to_json() for r in summary.rejected],
    )


# ---------------------------------------------------------------- the output directory


def _check_out(out: Path) -> None:
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise OutputError(f"{out} exists and is not an empty directory; choose a new one")
    except OSError as exc:
        raise OutputError(f"cannot use {out}: {exc.strerror or exc}") from exc


def _publish(partial: Path, out: Path) -> None:
    """Make the finished dataset appear at ``out`` in one rename."""
    try:
        for directory in (partial / IMAGES, *(partial / IMAGES).iterdir(), partial):
            fsync_directory(directory)
        os.rename(partial, out)  # replaces only a missing or empty ``out``
        fsync_directory(out.parent)
    except OSError as exc:
        raise OutputError(f"cannot move the finished dataset to {out}: {exc}") from exc


def _discard(partial: Path, writer: DatasetWriter | None) -> None:
    """Remove an unfinished dataset, whatever else fails on the way."""
    try:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.abort()
    finally:
        shutil.rmtree(partial, ignore_errors=True)
