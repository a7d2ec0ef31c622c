"""``overt export``: the data team's dataset export.

``overt export --data DIR --key DATASET.key --out OUT`` reads the batches the
collector stored under ``DIR``, verifies each one's device signature,
decrypts it with the dataset private key, validates it, and writes a
training-ready dataset to ``OUT`` (layout: :mod:`collector.export.dataset`;
``metadata.jsonl`` + ``images/`` load as a Hugging Face "imagefolder"
dataset). A batch that fails any check is reported with its reason and
skipped; nothing of it is written (checks: :mod:`collector.export.opening`).

Batches are hostile input: any enrolled device can seal anything to the
dataset key. Each is checked against the limits of what an agent writes
(``overt.wire.body``) from what it declares, before memory is
allocated for it, and one over a limit is rejected (``over a limit``) like
any other; the export goes on with the others. The memory an export needs
is that of one batch at its limits (its records and the frames its deltas
still need), not of the store. A batch that runs out of memory all the same
is rejected (``out of memory``) and the export goes on.

This module owns the export as a whole: the core :func:`export_batches`,
which takes any iterable of :class:`StoredBatch` (so it is tested without a
collector), the progress bar, the summary, ``dataset.json``, and the command
line with its adapter to the collector's store. It is part of the ``overt``
composition root, the one place that may import both the agent's format
decoders and the collector's storage.

Output guarantees: the dataset is built in a hidden sibling directory
(``.OUT.partial-*``) and renamed to ``OUT`` only when complete, every file
fsynced first. ``OUT`` therefore either does not exist or holds a complete
dataset, also after a crash. The ``.partial`` directory is removed on every
way out but success (an error, ``MemoryError``, ``KeyboardInterrupt``);
only a process killed outright (``kill -9``, the kernel's OOM killer) can
leave one to delete. An ``OUT`` that exists and is not empty is refused, never
overwritten. The exporter writes nothing under ``DIR`` (the store is opened
non-exclusive, beside a running collector). No private key material is written
anywhere: ``dataset.json`` names the dataset key by its ids from the batch
headers and the SHA-256 of its public key.

``dataset.json`` (format 1)::

    {"format": 1, "created_at": ISO, "source": DIR,
     "dataset_key": {"key_ids": [...], "public_key_sha256": HEX},
     "options": {"idle_split_seconds": S, "images": "referenced",
                 "png_compress_level": L},
     "counts": {"batches", "sealed_bytes", "events", "actions",
                "actions_with_screenshot", "frames", "images", "sessions",
                "rejected"},
     "files": {"metadata", "actions", "sessions", "images"},
     "rejected": [{"device_id", "seq", "batch_id", "reason", "detail"}, ...]}

Exit status: 0 when at least one batch was exported (rejected batches are
listed), 1 when nothing could be exported or the key, the data directory or
the output directory is unusable, 2 on a usage error.

Exceptions: see :mod:`collector.export.errors` (``ExportError`` and below).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from collector.errors import CollectorError
from collector.storage import Storage
from overt.files import atomic_write
from overt.wire.sealed import SealedBatchError, ed25519_from_b64, load_dataset_private_key

from .dataset import (
    ACTIONS,
    DATASET_FORMAT,
    IMAGES,
    METADATA,
    SESSIONS,
    DatasetWriter,
    iso,
)
from .errors import (
    BatchRejected,
    DatasetKeyError,
    ExportError,
    OutputError,
    StorageError,
)
from .opening import OpenedBatch, StoredBatch, open_batch
from .png import PngEncoder

__all__ = [
    "BatchRejected",
    "BatchSource",
    "CollectorStore",
    "DatasetKeyError",
    "ExportConfig",
    "ExportError",
    "ExportSummary",
    "OutputError",
    "ProgressBar",
    "Rejection",
    "StorageError",
    "StoredBatch",
    "export_batches",
    "load_key",
    "main",
    "open_store",
]

log = logging.getLogger(__name__)

MANIFEST = "dataset.json"


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """What to export where; built once at the entry point."""

    out: Path
    #: An idle stretch longer than this (no action) ends a session.
    idle_split_s: float = 300.0
    #: zlib level of the PNG frames (1: fast; 6 is about 2x slower, 10-25 % smaller).
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
class ExportSummary:
    """What an export did. ``out`` is None when nothing was exported."""

    out: Path | None = None
    batches: int = 0
    sealed_bytes: int = 0
    events: int = 0
    actions: int = 0
    actions_with_screenshot: int = 0
    frames: int = 0
    images: int = 0
    sessions: int = 0
    rejected: list[Rejection] = field(default_factory=list)

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


class ProgressBar:
    """A one-line progress bar redrawn in place (``\\r``) on a text stream.

    Redraws at most every ``interval`` seconds of the injected ``clock`` and
    once more on ``close``. ``total`` (batches) may be unknown.
    """

    WIDTH = 30

    def __init__(
        self,
        stream: IO[str],
        total: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
    ) -> None:
        self._stream = stream
        self._total = total
        self._clock = clock
        self._interval = interval
        self._start = clock()
        self._last_draw: float | None = None
        self._state = (0, 0)

    def update(self, batches: int, sealed_bytes: int) -> None:
        self._state = (batches, sealed_bytes)
        now = self._clock()
        if self._last_draw is None or now - self._last_draw >= self._interval:
            self._draw(now)

    def close(self) -> None:
        self._draw(self._clock())
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        self._last_draw = now
        batches, sealed = self._state
        elapsed = now - self._start
        rate = f"{sealed / 1e6 / elapsed:.1f} MB/s" if elapsed > 0 else "- MB/s"
        if self._total:
            done = min(batches, self._total)
            filled = self.WIDTH * done // self._total
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            head = f"[{bar}] {done}/{self._total} batches"
        else:
            head = f"{batches} batches"
        self._stream.write(f"\r{head}  {sealed / 1e6:.1f} MB  {rate}")
        self._stream.flush()


def load_key(path: str | os.PathLike[str]) -> X25519PrivateKey:
    """The dataset private key; raises :class:`DatasetKeyError` with the reason."""
    try:
        return load_dataset_private_key(path)
    except SealedBatchError as exc:
        raise DatasetKeyError(str(exc)) from exc


def export_batches(
    batches: Iterable[StoredBatch],
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
    :class:`StorageError` from ``batches`` through; in both cases nothing is
    left at ``config.out``.
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
        for number, stored in enumerate(batches, 1):
            total_bytes += len(stored.sealed)
            _export_one(stored, dataset_key, writer, seen, summary)
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


def _discard(partial: Path, writer: DatasetWriter | None) -> None:
    """Remove an unfinished dataset, whatever else fails on the way."""
    try:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.abort()
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _export_one(
    stored: StoredBatch,
    dataset_key: X25519PrivateKey,
    writer: DatasetWriter,
    seen: set[tuple[str, int]],
    summary: ExportSummary,
) -> None:
    ident = (stored.device_id, stored.seq)
    try:
        if ident in seen:
            raise BatchRejected("duplicate", f"device {stored.device_id} seq {stored.seq} again")
        opened: OpenedBatch = open_batch(stored, dataset_key)
        writer.add(opened)
        seen.add(ident)
    except BatchRejected as exc:
        _reject(stored, exc.reason, exc.detail, writer, summary)
    except MemoryError:
        # Past the limits this should not happen; the batch's objects are
        # freed with the exception, and the writer undid what it wrote.
        _reject(stored, "out of memory", f"batch {stored.batch_id}", writer, summary)


def _reject(
    stored: StoredBatch, reason: str, detail: str, writer: DatasetWriter, summary: ExportSummary
) -> None:
    log.info(  # listed in the summary and dataset.json; not a warning twice over
        "batch rejected: device %s seq %d batch %s: %s",
        stored.device_id,
        stored.seq,
        stored.batch_id,
        reason,
    )
    summary.rejected.append(
        Rejection(stored.device_id, stored.seq, stored.batch_id, reason, detail)
    )
    if reason != "duplicate":
        writer.skip(stored.device_id)


def _fill(summary: ExportSummary, writer: DatasetWriter) -> None:
    c = writer.counts
    summary.batches = c.batches
    summary.sealed_bytes = c.sealed_bytes
    summary.events = c.events
    summary.actions = c.actions
    summary.actions_with_screenshot = c.actions_with_screenshot
    summary.frames = c.frames
    summary.images = c.images
    summary.sessions = c.sessions


def _check_out(out: Path) -> None:
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise OutputError(f"{out} exists and is not an empty directory; choose a new one")
    except OSError as exc:
        raise OutputError(f"cannot use {out}: {exc.strerror or exc}") from exc


def _write_manifest(
    root: Path,
    config: ExportConfig,
    summary: ExportSummary,
    writer: DatasetWriter,
    dataset_key: X25519PrivateKey,
    clock: Callable[[], float],
) -> None:
    public = dataset_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    manifest = {
        "format": DATASET_FORMAT,
        "created_at": iso(round(clock() * 1000)),
        "source": config.source,
        "dataset_key": {
            "key_ids": sorted(writer.counts.dataset_key_ids),
            "public_key_sha256": hashlib.sha256(public).hexdigest(),
        },
        "options": {
            "idle_split_seconds": config.idle_split_s,
            "images": "referenced",
            "png_compress_level": config.png_compress_level,
        },
        "counts": {
            "batches": summary.batches,
            "sealed_bytes": summary.sealed_bytes,
            "events": summary.events,
            "actions": summary.actions,
            "actions_with_screenshot": summary.actions_with_screenshot,
            "frames": summary.frames,
            "images": summary.images,
            "sessions": summary.sessions,
            "rejected": len(summary.rejected),
        },
        "files": {
            "metadata": METADATA,
            "actions": ACTIONS,
            "sessions": SESSIONS,
            "images": IMAGES + "/",
        },
        "rejected": [r.to_json() for r in summary.rejected],
    }
    data = json.dumps(manifest, indent=2, ensure_ascii=False).encode() + b"\n"
    try:
        atomic_write(root / MANIFEST, data)
    except OSError as exc:
        raise OutputError(f"cannot write {MANIFEST}: {exc.strerror or exc}") from exc


def _publish(partial: Path, out: Path) -> None:
    """Make the finished dataset appear at ``out`` in one rename."""
    try:
        for directory in (partial / IMAGES, *(partial / IMAGES).iterdir(), partial):
            _fsync_dir(directory)
        os.rename(partial, out)  # replaces only a missing or empty ``out``
        _fsync_dir(out.parent)
    except OSError as exc:
        raise OutputError(f"cannot move the finished dataset to {out}: {exc}") from exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2, one line
        self.exit(2, f"{self.prog}: {message}\n")


def _parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Decrypt stored batches into a training dataset.")
    p.add_argument("--data", required=True, metavar="DIR", help="the collector's data directory")
    p.add_argument("--key", required=True, metavar="DATASET.key", help="dataset private key")
    p.add_argument("--out", required=True, metavar="OUT", help="new directory for the dataset")
    p.add_argument(
        "--idle-minutes",
        type=_positive,
        default=5.0,
        metavar="MIN",
        help="an idle stretch longer than this ends a session (default 5)",
    )
    p.add_argument(
        "--png-level",
        type=int,
        choices=range(10),
        default=1,
        metavar="0-9",
        help="PNG compression level of the frames (default 1: fast)",
    )
    p.add_argument(
        "--jobs",
        type=_count,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="threads compressing PNG frames, 0 for none (default: cores, at most 4)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    return p


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def main(argv: Sequence[str] | None = None, prog: str = "overt export") -> int:
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{prog}: %(message)s")
    config = ExportConfig(
        out=Path(args.out),
        idle_split_s=args.idle_minutes * 60.0,
        png_compress_level=args.png_level,
        jobs=args.jobs,
        source=os.path.abspath(args.data),
    )
    try:
        key = load_key(args.key)
        store = open_store(Path(args.data))
        try:
            want_progress = args.progress if args.progress is not None else sys.stderr.isatty()
            bar = ProgressBar(sys.stderr, store.count()) if want_progress else None
            summary = export_batches(store.batches(), key, config, progress=bar)
        finally:
            store.close()
    except ExportError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    for line in summary.lines():
        print(line)
    if summary.out is None:
        print(f"{prog}: no batch could be exported", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- the collector's store


class BatchSource(Protocol):
    """Stored batches in (device, seq) order, and how many there are."""

    def count(self) -> int | None: ...

    def batches(self) -> Iterator[StoredBatch]: ...

    def close(self) -> None: ...


class CollectorStore:
    """The collector's :class:`collector.storage.Storage` as a :class:`BatchSource`.

    Each device's enrolled public key is looked up once; a device the store
    does not know (or whose key does not parse) gives ``device_key=None``,
    which the exporter reports as ``unknown device``. Batches of revoked
    devices are exported when their signatures verify (they were accepted
    before the revocation). The collector's errors are wrapped as
    :class:`StorageError`; a batch whose stored bytes fail their checksum
    is reported as rejected (``corrupt in store``) and the export goes on.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def count(self) -> int | None:
        try:
            return self._storage.count_batches()
        except CollectorError as exc:
            raise StorageError(f"cannot count stored batches: {exc}") from exc

    def batches(self) -> Iterator[StoredBatch]:
        keys: dict[str, Ed25519PublicKey | None] = {}
        corrupt: list[StoredBatch] = []

        def on_corrupt(device_id: str, seq: int, batch_id: str, reason: str) -> None:
            corrupt.append(StoredBatch(device_id, seq, batch_id, None, store_problem=reason))

        try:
            for stored in self._storage.iter_batches(on_corrupt=on_corrupt):
                yield from corrupt
                corrupt.clear()
                device = stored.device_id
                if device not in keys:
                    keys[device] = self._device_key(device)
                yield StoredBatch(
                    device_id=device,
                    seq=stored.seq,
                    batch_id=stored.batch_id,
                    device_key=keys[device],
                    sealed=stored.sealed,
                )
            yield from corrupt
        except CollectorError as exc:
            raise StorageError(f"cannot read stored batches: {exc}") from exc

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
            raise StorageError(f"cannot close the store: {exc}") from exc


def open_store(data: Path) -> CollectorStore:
    """The collector's embedded store under ``data``, opened beside a running
    collector (non-exclusive); raises :class:`StorageError`."""
    from collector.config import StorageConfig
    from collector.sqlite_store import DB_FILE, SQLiteStorage

    if not (data / DB_FILE).is_file():
        raise StorageError(f"{data} is not a collector data directory (no {DB_FILE})")
    try:
        return CollectorStore(SQLiteStorage(StorageConfig(data_dir=data, exclusive=False)))
    except CollectorError as exc:
        raise StorageError(f"cannot open the store in {data}: {exc}") from exc
