"""The embedded store's own promises: segment files, crash repair, locking, corruption.

The Protocol-level behaviour is in ``test_storage.py``; here the on-disk
layout is inspected and damaged on purpose, as a crash or a bad disk would.
A real SIGKILL of a serving collector is in ``test_process.py``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collector.blobs import segment_name
from collector.config import StorageConfig
from collector.errors import CorruptStoreError, StorageError, StoreLockedError
from collector.store.records import AuditEvent, BatchOutcome
from collector.store.sqlite import BLOB_DIR, DB_FILE, SQLiteStorage

from ._build import batch_write
from .test_storage import _device


def _open(place: Path, **options: object) -> SQLiteStorage:
    return SQLiteStorage(StorageConfig(data_dir=place, **options))  # type: ignore[arg-type]


def _segments(place: Path) -> dict[str, bytes]:
    directory = place.joinpath(*BLOB_DIR)
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_batches_go_to_segment_files_that_roll_over_at_their_limit(tmp_path: Path) -> None:
    with _open(tmp_path, segment_max_bytes=4000) as store:
        _device(store)
        writes = [batch_write("dev-1", seq) for seq in range(1, 8)]  # ~1 KB each
        for write in writes:
            store.put_batch(write)
    segments = _segments(tmp_path)
    assert len(segments) >= 2
    assert all(len(data) <= 4000 for data in segments.values())
    assert b"".join(segments.values()) == b"".join(w.sealed for w in writes)


def test_a_second_serving_collector_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with _open(tmp_path):
        with pytest.raises(StoreLockedError):
            _open(tmp_path)
        # Tools beside it (enroll-token, export) open it non-exclusive.
        with _open(tmp_path, exclusive=False) as tool:
            assert tool.list_devices() == []


def test_a_non_exclusive_store_never_writes_batches(tmp_path: Path) -> None:
    with _open(tmp_path, exclusive=False) as tool:
        with pytest.raises(StorageError):
            tool.put_batch(batch_write("dev-1", 1))
        with pytest.raises(StorageError):
            tool.erase_batches("dev-1", 0, 1, AuditEvent(1, "a", "b", "c"))


def test_bytes_appended_after_the_last_commit_are_truncated_at_start(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        _device(store)
        write = batch_write("dev-1", 1)
        store.put_batch(write)
    # A crash between the append and the commit leaves bytes nobody acknowledged.
    segment = tmp_path.joinpath(*BLOB_DIR, segment_name(1))
    with segment.open("ab") as stream:
        stream.write(b"unacknowledged ciphertext" * 100)
    orphan = tmp_path.joinpath(*BLOB_DIR, segment_name(2))
    orphan.write_bytes(b"a segment no commit named")
    with _open(tmp_path) as store:
        assert _segments(tmp_path) == {segment_name(1): write.sealed}
        assert store.put_batch(batch_write("dev-1", 2)) is BatchOutcome.STORED
        assert [b.seq for b in store.iter_batches()] == [1, 2]


def test_a_segment_shorter_than_its_commit_is_reported_not_repaired(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        _device(store)
        store.put_batch(batch_write("dev-1", 1))
    segment = tmp_path.joinpath(*BLOB_DIR, segment_name(1))
    segment.write_bytes(segment.read_bytes()[:10])
    with pytest.raises(CorruptStoreError):
        _open(tmp_path)
    assert len(segment.read_bytes()) == 10  # left as found


def test_bytes_that_fail_their_checksum_are_reported_on_read(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        _device(store)
        store.put_batch(batch_write("dev-1", 1))
    segment = tmp_path.joinpath(*BLOB_DIR, segment_name(1))
    data = bytearray(segment.read_bytes())
    data[5] ^= 0xFF
    segment.write_bytes(bytes(data))
    with _open(tmp_path) as store:
        with pytest.raises(CorruptStoreError):
            store.get_batch("dev-1", 1)
        with pytest.raises(CorruptStoreError):
            list(store.iter_batches())


def test_erasure_zeroes_the_ciphertext_in_the_segment(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        _device(store)
        keep, erase = batch_write("dev-1", 1), batch_write("dev-1", 5)
        store.put_batch(keep)
        store.put_batch(erase)
        store.erase_batches("dev-1", erase.start_ms, erase.end_ms, AuditEvent(1, "a", "b", "c"))
        [segment] = _segments(tmp_path).values()
        assert erase.sealed not in segment
        assert segment == keep.sealed + bytes(len(erase.sealed))


def test_an_erasure_interrupted_before_zeroing_is_finished_at_start(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        _device(store)
        write = batch_write("dev-1", 1)
        store.put_batch(write)
    # The state a crash after the erasure's commit and before the zeroing leaves.
    db = sqlite3.connect(tmp_path / DB_FILE)
    with db:
        db.execute("DELETE FROM batches")
        db.execute("INSERT INTO blob_holes VALUES (1, 0, ?)", (len(write.sealed),))
    db.close()
    with _open(tmp_path):
        assert _segments(tmp_path)[segment_name(1)] == bytes(len(write.sealed))
    db = sqlite3.connect(tmp_path / DB_FILE)
    assert db.execute("SELECT COUNT(*) FROM blob_holes").fetchone() == (0,)
    db.close()


def test_a_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    with _open(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / DB_FILE)
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(CorruptStoreError, match="schema version 99"):
        _open(tmp_path)


def test_the_database_runs_in_wal_mode_and_checks_sound(tmp_path: Path) -> None:
    with _open(tmp_path) as store:
        _device(store)
    db = sqlite3.connect(tmp_path / DB_FILE)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    with _open(tmp_path) as again:
        assert again.integrity_check() == "ok"


def test_a_data_directory_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError):
        _open(blocker / "data")
