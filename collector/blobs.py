"""Sealed-batch bytes on disk: append-only segment files.

On-disk format, version 1, under ``DATA/blobs/v1/``::

    seg-00000001.dat   sealed batches back to back, no framing
    seg-00000002.dat   started when the previous one passed its size limit
    ...

A segment holds nothing but the bytes; where each batch starts, its length
and its SHA-256 live in the metadata store (``collector.store.sqlite``),
together with each segment's committed length.

This module owns the files only. Its guarantees, given the protocol the
metadata store follows (append, :meth:`BlobSegments.sync`, then commit the
rows and the segment's new committed length):

- after :meth:`~BlobSegments.sync` returns, every byte appended so far is on
  disk, including the directory entry of a segment created since the last
  sync;
- after a crash, bytes past a segment's committed length belong to writes
  that were never acknowledged: :meth:`~BlobSegments.recover` truncates them,
  and removes segment files that no commit ever named;
- :meth:`~BlobSegments.zero` overwrites a range with zeros and syncs: that is
  how erasure removes ciphertext from a segment (space is reclaimed only by a
  future compaction; the bytes are gone at once).

Only the serving collector writes (``writable=True``); readers open segments
read-only and may run in other processes.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

from collector.errors import CorruptStoreError, StorageError
from overt.files import fsync_directory

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^seg-(\d{8})\.dat$")
#: Buffers per writev call (Linux's IOV_MAX).
_IOV_MAX = 1024


def segment_name(segment_id: int) -> str:
    return f"seg-{segment_id:08d}.dat"


class BlobSegments:
    """The segment files of one data directory.

    Appends and syncs come from one thread (the store's writer); reads may
    come from any thread (``os.pread`` on shared read-only descriptors).
    """

    def __init__(self, directory: Path, max_segment_bytes: int, *, writable: bool) -> None:
        self.directory = directory
        self.max_segment_bytes = max_segment_bytes
        self.writable = writable
        self._active_id = 0
        self._active_fd: int | None = None
        self._active_size = 0
        self._dirty: set[int] = set()
        self._dirty_fds: dict[int, int] = {}
        self._dir_dirty = False
        self._read_fds: dict[int, int] = {}
        self._read_lock = threading.Lock()
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StorageError(f"cannot create {directory}: {exc.strerror}") from exc

    # ------------------------------------------------------------- recovery

    def existing_ids(self) -> list[int]:
        ids = []
        for entry in os.listdir(self.directory):
            match = _NAME.match(entry)
            if match:
                ids.append(int(match.group(1)))
        return sorted(ids)

    def recover(self, committed: dict[int, int]) -> None:
        """Bring the files in line with the committed lengths after a crash.

        ``committed`` maps each segment id named by a commit to its committed
        length. Longer files are truncated, files no commit named are
        removed, a file shorter than its committed length is corruption.
        Then the highest committed segment becomes the active one.
        """
        if not self.writable:
            raise StorageError("blob segments are open read-only")
        for segment_id in self.existing_ids():
            path = self.directory / segment_name(segment_id)
            if segment_id not in committed:
                logger.warning("removing segment %d that no commit named", segment_id)
                path.unlink()
                self._dir_dirty = True
                continue
            size = path.stat().st_size
            end = committed[segment_id]
            if size < end:
                raise CorruptStoreError(
                    f"segment {segment_id} is {size} bytes but {end} were committed"
                )
            if size > end:
                logger.info("truncating segment %d from %d to %d bytes", segment_id, size, end)
                os.truncate(path, end)
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        missing = [s for s in committed if not (self.directory / segment_name(s)).exists()]
        if missing:
            raise CorruptStoreError(f"committed segment files are missing: {missing}")
        if committed:
            self._open_active(max(committed), create=False)
        if self._dir_dirty:
            fsync_directory(self.directory)
            self._dir_dirty = False

    # --------------------------------------------------------------- writing

    def _open_active(self, segment_id: int, *, create: bool) -> None:
        path = self.directory / segment_name(segment_id)
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        fd = os.open(path, flags, 0o600)
        if self._active_fd is not None and self._active_id not in self._dirty:
            os.close(self._active_fd)
        elif self._active_fd is not None:
            self._dirty_fds[self._active_id] = self._active_fd
        self._active_id = segment_id
        self._active_fd = fd
        self._active_size = os.fstat(fd).st_size
        if create:
            self._dir_dirty = True

    def mark(self) -> tuple[int, int]:
        """Where the next append goes, to :meth:`rollback` to."""
        return self._active_id, self._active_size

    def append(self, data: bytes) -> tuple[int, int]:
        """Append ``data``; return (segment id, offset). Not durable until :meth:`sync`."""
        if not self.writable:
            raise StorageError("blob segments are open read-only")
        if self._active_fd is None or (
            self._active_size > 0 and self._active_size + len(data) > self.max_segment_bytes
        ):
            self._open_active(self._active_id + 1, create=True)
        assert self._active_fd is not None
        offset = self._active_size
        view = memoryview(data)
        while view:
            written = os.write(self._active_fd, view)
            view = view[written:]
        self._active_size += len(data)
        self._dirty.add(self._active_id)
        return self._active_id, offset

    def append_many(self, items: list[bytes]) -> list[tuple[int, int]]:
        """Append each item (one ``writev`` per segment touched); where each one went."""
        if not self.writable:
            raise StorageError("blob segments are open read-only")
        places: list[tuple[int, int]] = []
        pending: list[bytes] = []
        for data in items:
            if self._active_fd is None or (
                self._active_size > 0 and self._active_size + len(data) > self.max_segment_bytes
            ):
                self._write_all(pending)
                pending = []
                self._open_active(self._active_id + 1, create=True)
            places.append((self._active_id, self._active_size))
            self._active_size += len(data)
            pending.append(data)
        self._write_all(pending)
        return places

    def _write_all(self, buffers: list[bytes]) -> None:
        """Write ``buffers`` at the end of the active segment (already counted in its size)."""
        if not buffers:
            return
        assert self._active_fd is not None
        self._dirty.add(self._active_id)
        views = [memoryview(b) for b in buffers]
        while views:
            written = os.writev(self._active_fd, views[:_IOV_MAX])
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]

    def sync(self) -> None:
        """Make every append so far durable (data, then any new directory entry)."""
        for segment_id in sorted(self._dirty):
            fd = self._active_fd if segment_id == self._active_id else self._dirty_fds[segment_id]
            assert fd is not None
            os.fdatasync(fd)
        for fd in self._dirty_fds.values():
            os.close(fd)
        self._dirty_fds.clear()
        self._dirty.clear()
        if self._dir_dirty:
            fsync_directory(self.directory)
            self._dir_dirty = False

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget appends made after ``mark`` (their transaction did not commit)."""
        segment_id, size = mark
        for fd in self._dirty_fds.values():
            os.close(fd)
        self._dirty_fds.clear()
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
        for created in range(segment_id + 1, self._active_id + 1):
            (self.directory / segment_name(created)).unlink(missing_ok=True)
            self._dir_dirty = True
        self._dirty.clear()
        self._active_id, self._active_size = segment_id, 0
        if segment_id:
            self._open_active(segment_id, create=False)
            assert self._active_fd is not None
            os.ftruncate(self._active_fd, size)
            self._active_size = size

    # --------------------------------------------------------------- erasure

    def zero(self, ranges: list[tuple[int, int, int]]) -> None:
        """Overwrite each (segment, offset, length) with zeros, then sync those segments."""
        by_segment: dict[int, list[tuple[int, int]]] = {}
        for segment_id, offset, length in ranges:
            by_segment.setdefault(segment_id, []).append((offset, length))
        for segment_id, spans in by_segment.items():
            path = self.directory / segment_name(segment_id)
            try:
                fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                continue  # a segment truncated away: nothing left to zero
            try:
                size = os.fstat(fd).st_size
                for offset, length in spans:
                    end = min(offset + length, size)
                    if end > offset:
                        os.pwrite(fd, bytes(end - offset), offset)
                os.fdatasync(fd)
            finally:
                os.close(fd)

    # --------------------------------------------------------------- reading

    def read(self, segment_id: int, offset: int, length: int) -> bytes:
        fd = self._read_fds.get(segment_id)
        if fd is None:
            with self._read_lock:
                fd = self._read_fds.get(segment_id)
                if fd is None:
                    path = self.directory / segment_name(segment_id)
                    try:
                        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                    except FileNotFoundError as exc:
                        raise CorruptStoreError(f"segment {segment_id} is missing") from exc
                    self._read_fds[segment_id] = fd
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise CorruptStoreError(
                f"segment {segment_id} is short: wanted {length} bytes at {offset}"
            )
        return data

    def close(self) -> None:
        with self._read_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
        for fd in self._dirty_fds.values():
            os.close(fd)
        self._dirty_fds.clear()
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
