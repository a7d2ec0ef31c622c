"""The spool: durable, ordered, budgeted, self-checking storage of sealed batches."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sinks.base import SealError, SinkError, SpoolConflictError, SpoolError, SpoolFullError
from agent.sinks.ledger import LedgerState
from agent.sinks.spool import Spool, spool_path
from overt.wire.sealed import open_sealed, parse_sealed

from ._build import DATASET, MINUTE_MS, T0_MS, body_for, make_sealed

DAY_MS = 86_400_000
NOW = T0_MS + 100 * MINUTE_MS  # later than every test batch's end


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path)
    yield s
    s.close()


def put(spool: Spool, seq: int, *, hold_until_ms: int = NOW, **kwargs: object) -> bytes:
    sealed = make_sealed(seq, **kwargs)
    assert spool.put(sealed, now_ms=NOW, hold_until_ms=hold_until_ms)
    return sealed


def raw(spool: Spool) -> sqlite3.Connection:
    """A second connection, as another process (or a disk error) would have."""
    return sqlite3.connect(spool.path, isolation_level=None)


def states(spool: Spool) -> dict[int, LedgerState]:
    return {e.seq: e.state for e in spool.ledger.recent(365, NOW)}


# ----------------------------------------------------------------- on disk


def test_the_spool_lives_in_a_versioned_owner_only_path(tmp_path: Path, spool: Spool) -> None:
    assert spool.path == tmp_path / "spool" / "v1" / "spool.db" == spool_path(tmp_path)
    assert stat.S_IMODE(os.stat(spool.path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(spool.path.parent.parent).st_mode) == 0o700
    put(spool, 1)
    for name in ("spool.db", "spool.db-wal"):
        assert stat.S_IMODE(os.stat(spool.path.parent / name).st_mode) == 0o600


def test_the_database_is_in_wal_mode_with_full_sync(spool: Spool) -> None:
    conn = spool._db._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_batches_survive_close_and_reopen_intact(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    stored = {seq: put(spool, seq) for seq in (1, 2, 3)}
    spool.close()
    again = Spool(tmp_path)
    try:
        got = []
        while (batch := again.next_ready(NOW)) is not None:
            assert batch.sealed == stored[batch.seq]
            got.append(batch.seq)
            again.ack(batch, now_ms=NOW, destination="https://c")
        assert got == [1, 2, 3]
        assert again.integrity_check() == "ok"
    finally:
        again.close()


def test_a_sealed_batch_comes_back_openable(spool: Spool) -> None:
    put(spool, 5)
    batch = spool.next_ready(NOW)
    assert batch is not None
    assert open_sealed(parse_sealed(batch.sealed), DATASET) == body_for(5)


# ------------------------------------------------------------ held and ready


def test_a_batch_is_held_until_its_hold_time_then_ready(spool: Spool) -> None:
    put(spool, 1, hold_until_ms=NOW + 15 * MINUTE_MS)
    assert spool.next_ready(NOW) is None
    assert spool.next_hold_until(NOW) == NOW + 15 * MINUTE_MS
    stats = spool.stats(NOW)
    assert (stats.batches, stats.held, stats.ready) == (1, 1, 0)
    assert states(spool) == {1: LedgerState.HELD}
    later = NOW + 15 * MINUTE_MS
    assert spool.next_ready(later) is not None
    assert spool.stats(later).ready == 1
    assert spool.next_hold_until(later) is None


def test_ready_batches_come_in_sequence_order(spool: Spool) -> None:
    for seq in (3, 1, 2):
        put(spool, seq)
    order = []
    while (batch := spool.next_ready(NOW)) is not None:
        order.append(batch.seq)
        spool.ack(batch, now_ms=NOW, destination="https://c")
    assert order == [1, 2, 3]


# ------------------------------------------------------------------- put


def test_putting_the_same_batch_again_changes_nothing(spool: Spool) -> None:
    first = put(spool, 1)
    assert spool.put(make_sealed(1), now_ms=NOW, hold_until_ms=NOW) is False
    batch = spool.next_ready(NOW)
    assert batch is not None
    assert batch.sealed == first
    assert spool.stats(NOW).batches == 1


def test_a_sequence_number_used_by_another_batch_is_a_conflict(spool: Spool) -> None:
    put(spool, 1)
    clash = make_sealed(1, batch_id="f" * 32)
    with pytest.raises(SpoolConflictError, match="sequence number 1"):
        spool.put(clash, now_ms=NOW, hold_until_ms=NOW)
    assert spool.stats(NOW).batches == 1
    assert [e.batch_id for e in spool.ledger.recent(365, NOW)] == [f"{1:032x}"]


def test_an_uploaded_sequence_number_cannot_be_spooled_again_for_another_batch(
    spool: Spool,
) -> None:
    put(spool, 1)
    batch = spool.next_ready(NOW)
    assert batch is not None
    spool.ack(batch, now_ms=NOW, destination="https://c")
    assert spool.put(make_sealed(1), now_ms=NOW, hold_until_ms=NOW) is False  # same batch
    with pytest.raises(SpoolConflictError):
        spool.put(make_sealed(1, batch_id="e" * 32), now_ms=NOW, hold_until_ms=NOW)
    assert spool.next_ready(NOW) is None


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"OVSB\x01\x00\x00\x00\x02{}"], ids=["empty", "junk", "bad-hdr"]
)
def test_bytes_that_are_not_a_sealed_batch_are_refused(spool: Spool, data: bytes) -> None:
    with pytest.raises(SealError):
        spool.put(data, now_ms=NOW, hold_until_ms=NOW)
    assert spool.stats(NOW).batches == 0
    assert spool.ledger.recent(365, NOW) == []


# ------------------------------------------------------------------ budget


def test_a_put_over_the_budget_raises_spool_full_and_writes_nothing(tmp_path: Path) -> None:
    one = len(make_sealed(1))
    spool = Spool(tmp_path, budget_bytes=2 * one + 10)
    try:
        put(spool, 1)
        put(spool, 2)
        with pytest.raises(SpoolFullError) as raised:
            put(spool, 3)
        assert raised.value.reason == "budget"
        assert isinstance(raised.value, SinkError)
        assert spool.stats(NOW).batches == 2
        assert 3 not in states(spool)
        # An upload frees space; the same batch then goes in.
        batch = spool.next_ready(NOW)
        assert batch is not None
        spool.ack(batch, now_ms=NOW, destination="https://c")
        put(spool, 3)
        assert spool.stats(NOW).bytes <= spool.budget_bytes
    finally:
        spool.close()


def test_a_lower_budget_applies_to_the_next_put(spool: Spool) -> None:
    put(spool, 1)
    spool.set_budget(spool.stats(NOW).bytes)
    with pytest.raises(SpoolFullError):
        put(spool, 2)
    with pytest.raises(ValueError):
        spool.set_budget(-1)


def test_dead_letters_and_quarantine_count_against_the_budget(spool: Spool) -> None:
    put(spool, 1)
    batch = spool.next_ready(NOW)
    assert batch is not None
    spool.dead_letter(batch, now_ms=NOW, status=422, error="malformed")
    stats = spool.stats(NOW)
    assert (stats.batches, stats.dead, stats.bytes) == (0, 1, batch.size)


# -------------------------------------------------------- ack, dead letters


def test_ack_deletes_the_batch_and_records_the_upload(spool: Spool) -> None:
    put(spool, 1)
    batch = spool.next_ready(NOW)
    assert batch is not None
    spool.ack(batch, now_ms=NOW + 5, destination="https://collector.example")
    assert spool.next_ready(NOW) is None
    (entry,) = spool.ledger.recent(1, NOW)
    assert entry.state is LedgerState.UPLOADED
    assert (entry.uploaded_at_ms, entry.destination) == (NOW + 5, "https://collector.example")
    spool.ack(batch, now_ms=NOW + 9, destination="x")  # a second ack changes nothing
    assert spool.ledger.recent(1, NOW)[0].uploaded_at_ms == NOW + 5


def test_a_dead_letter_is_kept_visible_and_never_offered_again(spool: Spool) -> None:
    put(spool, 1)
    put(spool, 2)
    batch = spool.next_ready(NOW)
    assert batch is not None
    assert batch.seq == 1
    spool.dead_letter(batch, now_ms=NOW, status=409, error="sequence_conflict")
    nxt = spool.next_ready(NOW)
    assert nxt is not None
    assert nxt.seq == 2
    (dead,) = spool.dead_letters()
    assert (dead.seq, dead.status, dead.error) == (1, 409, "sequence_conflict")
    assert states(spool)[1] is LedgerState.DEAD


# --------------------------------------------------------------- quarantine


def _damage(spool: Spool, seq: int, sql: str, *params: object) -> None:
    with raw(spool) as conn:
        conn.execute(sql, (*params, seq))


def test_a_row_whose_bytes_changed_is_quarantined_and_the_rest_flows(spool: Spool) -> None:
    for seq in (1, 2, 3):
        put(spool, seq)
    sealed = make_sealed(2)
    _damage(spool, 2, "UPDATE batches SET sealed = ? WHERE seq = ?", sealed[:-1] + b"x")
    got = []
    while (batch := spool.next_ready(NOW)) is not None:
        got.append(batch.seq)
        spool.ack(batch, now_ms=NOW, destination="https://c")
    assert got == [1, 3]
    (row,) = spool.quarantined()
    assert (row.seq, row.batch_id, row.reason) == (2, f"{2:032x}", "checksum mismatch")
    assert spool.stats(NOW).quarantined == 1
    assert states(spool)[2] is LedgerState.QUARANTINED


def _flip_last_byte(sealed: bytes) -> bytes:
    return sealed[:-1] + bytes([sealed[-1] ^ 1])


def _set_sealed(new: bytes, *, checksum: bool) -> tuple[str, tuple[object, ...]]:
    if not checksum:
        return "UPDATE batches SET sealed = ? WHERE seq = ?", (new,)
    sql = "UPDATE batches SET sealed = ?, size = ?, checksum = ? WHERE seq = ?"
    return sql, (new, len(new), hashlib.sha256(new).digest())


DAMAGE = {
    "bit flip": (_set_sealed(_flip_last_byte(make_sealed(1)), checksum=False), "checksum mismatch"),
    "checksum rewritten": (
        ("UPDATE batches SET checksum = ? WHERE seq = ?", (b"\x00" * 32,)),
        "checksum mismatch",
    ),
    "size column wrong": (("UPDATE batches SET size = size + 1 WHERE seq = ?", ()), "differs"),
    "not a sealed batch": (_set_sealed(b"x" * 300, checksum=True), "do not parse"),
    "another row's batch": (_set_sealed(make_sealed(2), checksum=True), "does not match the row"),
}


@pytest.mark.parametrize("name", DAMAGE)
def test_each_kind_of_damage_is_quarantined_with_its_reason(spool: Spool, name: str) -> None:
    (sql, params), reason = DAMAGE[name]
    put(spool, 1)
    put(spool, 2)
    _damage(spool, 1, sql, *params)
    batch = spool.next_ready(NOW)
    assert batch is not None
    assert batch.seq == 2
    (row,) = spool.quarantined()
    assert row.seq == 1
    assert reason in row.reason


def test_check_all_quarantines_bad_rows_without_waiting_for_them(spool: Spool) -> None:
    put(spool, 1, hold_until_ms=NOW + DAY_MS)
    put(spool, 2, hold_until_ms=NOW + DAY_MS)
    _damage(spool, 2, "UPDATE batches SET checksum = ? WHERE seq = ?", b"\x01" * 32)
    assert spool.check_all(NOW) == 1
    assert [b.seq for b in spool.waiting()] == [1]


# ------------------------------------------------------------------ discard


def test_discard_deletes_waiting_batches_in_range_and_keeps_the_others(spool: Spool) -> None:
    for seq in (1, 2, 3, 4):
        put(spool, seq, hold_until_ms=NOW + DAY_MS)
    # Batch n covers [T0 + n min, T0 + (n+1) min - 1]; discard from inside batch 3.
    since = T0_MS + 3 * MINUTE_MS + 30_000
    result = spool.discard(since, NOW)
    assert result.batches_deleted == 2  # 3 overlaps, 4 lies inside
    assert result.erasure_range is None
    assert not result.erasure_requested
    assert [b.seq for b in spool.waiting()] == [1, 2]
    assert states(spool) == {
        1: LedgerState.HELD,
        2: LedgerState.HELD,
        3: LedgerState.DISCARDED,
        4: LedgerState.DISCARDED,
    }


def test_discard_of_uploaded_batches_queues_a_durable_erasure_request(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for seq in (1, 2, 3):
        put(spool, seq)
    for _ in range(2):  # 1 and 2 leave the machine
        batch = spool.next_ready(NOW)
        assert batch is not None
        spool.ack(batch, now_ms=NOW, destination="https://c")
    result = spool.discard(T0_MS + 2 * MINUTE_MS, NOW)
    assert result.batches_deleted == 1
    assert result.erasure_range == (T0_MS + 2 * MINUTE_MS, T0_MS + 3 * MINUTE_MS - 1)
    spool.close()
    spool = Spool(tmp_path)
    try:
        (request,) = spool.pending_erasures()
        assert (request.start_ms, request.end_ms) == result.erasure_range
        spool.erasure_failed(request.id, "503")
        assert spool.pending_erasures()[0].attempts == 1
        spool.erasure_done(request.id)
        assert spool.pending_erasures() == []
    finally:
        spool.close()


def test_a_rejected_erasure_request_is_kept_but_not_resent(spool: Spool) -> None:
    put(spool, 1)
    batch = spool.next_ready(NOW)
    assert batch is not None
    spool.ack(batch, now_ms=NOW, destination="https://c")
    spool.discard(T0_MS, NOW)
    (request,) = spool.pending_erasures()
    spool.erasure_failed(request.id, "422", rejected=True)
    assert spool.pending_erasures() == []
    with raw(spool) as conn:
        assert conn.execute("SELECT rejected FROM erasures").fetchall() == [(1,)]


def test_a_batch_discarded_during_its_upload_is_recorded_and_erasure_queued(
    spool: Spool,
) -> None:
    put(spool, 1)
    batch = spool.next_ready(NOW)
    assert batch is not None
    assert spool.discard(T0_MS, NOW).batches_deleted == 1  # while the POST is on its way
    spool.ack(batch, now_ms=NOW, destination="https://c")  # ... and the collector took it
    assert states(spool)[1] is LedgerState.UPLOADED
    (request,) = spool.pending_erasures()
    assert (request.start_ms, request.end_ms) == (batch.start_ms, batch.end_ms)


def test_discard_also_removes_dead_letters_in_range(spool: Spool) -> None:
    put(spool, 1)
    batch = spool.next_ready(NOW)
    assert batch is not None
    spool.dead_letter(batch, now_ms=NOW, status=422, error="bad")
    assert spool.discard(T0_MS, NOW).batches_deleted == 1
    assert spool.dead_letters() == []
    assert spool.stats(NOW).bytes == 0


def test_discard_with_since_after_now_is_refused(spool: Spool) -> None:
    with pytest.raises(ValueError):
        spool.discard(NOW + 1, NOW)


# -------------------------------------------------------------- retention


def test_maintain_prunes_old_entries_but_never_waiting_batches(spool: Spool) -> None:
    put(spool, 1)
    put(spool, 2, hold_until_ms=NOW + 40 * DAY_MS)
    batch = spool.next_ready(NOW)
    assert batch is not None
    spool.ack(batch, now_ms=NOW, destination="https://c")
    assert spool.maintain(NOW + 29 * DAY_MS) == 0
    assert spool.maintain(NOW + 31 * DAY_MS) == 1
    assert set(states(spool)) == {2}
    assert spool.last_seq() == 2


# ------------------------------------------------------------- bad files


def test_a_file_that_is_not_a_database_is_a_clear_error_and_left_alone(tmp_path: Path) -> None:
    path = spool_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SpoolError, match=str(path)):
        Spool(tmp_path)
    assert path.read_bytes() == b"this is not a database" * 100


def test_a_spool_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    Spool(tmp_path).close()
    with sqlite3.connect(spool_path(tmp_path)) as conn:
        conn.execute("PRAGMA user_version = 2")
    with pytest.raises(SpoolError, match="format 2"):
        Spool(tmp_path)


def test_a_spool_path_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("a file where the directory should be")
    with pytest.raises(SpoolError, match="cannot create"):
        Spool(tmp_path)


# ------------------------------------------------------------------ threads


def test_puts_reads_and_acks_from_several_threads_lose_nothing(spool: Spool) -> None:
    errors: list[BaseException] = []
    acked: list[int] = []

    def writer(first: int) -> None:
        try:
            for seq in range(first, first + 40, 2):
                put(spool, seq)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def uploader() -> None:
        try:
            while len(acked) < 40:
                batch = spool.next_ready(NOW)
                if batch is not None:
                    spool.ack(batch, now_ms=NOW, destination="https://c")
                    acked.append(batch.seq)
                spool.stats(NOW)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)]
    threads.append(threading.Thread(target=uploader))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(acked) == list(range(1, 41))
    assert spool.integrity_check() == "ok"
