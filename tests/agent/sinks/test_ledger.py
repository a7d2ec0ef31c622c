"""The ledger: what the tray shows of every batch, and bytes uploaded per local day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.sinks.ledger import DailyUpload, LedgerState, day_start_ms, local_day
from agent.sinks.spool import Spool

from ._build import MINUTE_MS, T0_MS, make_sealed

# A zone five hours behind UTC: local midnight is 05:00 UTC.
ZONE = timezone(timedelta(hours=-5))
DAY_MS = 86_400_000


def ms(text: str) -> int:
    """Epoch ms of a local wall-clock time in ZONE."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZONE).timestamp() * 1000)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path, tz=ZONE)
    yield s
    s.close()


def upload(spool: Spool, seq: int, at_ms: int) -> int:
    sealed = make_sealed(seq)
    spool.put(sealed, now_ms=at_ms, hold_until_ms=at_ms)
    batch = spool.next_ready(at_ms)
    assert batch is not None
    spool.ack(batch, now_ms=at_ms, destination="https://collector.example")
    return len(sealed)


def test_local_days_follow_the_time_zone() -> None:
    assert local_day(ms("2027-01-15T23:59:59"), ZONE) == date(2027, 1, 15)
    assert local_day(ms("2027-01-16T00:00:00"), ZONE) == date(2027, 1, 16)
    assert day_start_ms(date(2027, 1, 16), ZONE) == ms("2027-01-16T00:00:00")
    assert day_start_ms(date(2027, 1, 16), UTC) == ms("2027-01-15T19:00:00")


def test_an_entry_has_the_shape_of_the_control_api(spool: Spool) -> None:
    size = upload(spool, 3, T0_MS)
    (entry,) = spool.ledger.recent(7, T0_MS)
    assert entry.to_dict() == {
        "seq": 3,
        "batch_id": f"{3:032x}",
        "start_ms": T0_MS + 3 * MINUTE_MS,
        "end_ms": T0_MS + 4 * MINUTE_MS - 1,
        "apps": ["editor"],
        "counts": {
            "clicks": 3,
            "contexts": 0,
            "key_timings": 0,
            "markers": 1,
            "path_samples": 0,
            "paths": 0,
            "redactions": 0,
            "screenshots": 0,
            "scrolls": 0,
            "shortcuts": 0,
            "text_spans": 0,
        },
        "bytes": size,
        "state": "uploaded",
        "uploaded_at_ms": T0_MS,
        "destination": "https://collector.example",
    }


def test_recent_lists_the_last_days_newest_first_plus_everything_still_waiting(
    spool: Spool,
) -> None:
    now = T0_MS + 20 * DAY_MS
    upload(spool, 1, T0_MS)  # 20 days ago: outside a 7-day view
    spool.put(make_sealed(2), now_ms=T0_MS, hold_until_ms=now + DAY_MS)  # old, still held
    upload(spool, 30, now - DAY_MS)
    spool.put(make_sealed(31), now_ms=now, hold_until_ms=now)
    entries = spool.ledger.recent(7, now)
    assert [(e.seq, e.state) for e in entries] == [
        (31, LedgerState.READY),
        (30, LedgerState.UPLOADED),
        (2, LedgerState.HELD),
    ]
    assert [e.seq for e in spool.ledger.recent(30, now)] == [31, 30, 2, 1]
    assert [e.seq for e in spool.ledger.recent(30, now, limit=2)] == [31, 30]
    with pytest.raises(ValueError):
        spool.ledger.recent(-1, now)


def test_bytes_uploaded_are_counted_per_local_day(spool: Spool) -> None:
    a = upload(spool, 1, ms("2027-01-14T12:00:00"))
    b = upload(spool, 2, ms("2027-01-15T23:59:00"))  # 04:59 UTC on the 16th
    c = upload(spool, 3, ms("2027-01-16T00:01:00"))
    now = ms("2027-01-16T08:00:00")
    assert spool.ledger.uploaded_per_day(3, now) == [
        DailyUpload(date(2027, 1, 14), a),
        DailyUpload(date(2027, 1, 15), b),
        DailyUpload(date(2027, 1, 16), c),
    ]
    assert spool.ledger.uploaded_today(now) == c
    assert spool.ledger.uploaded_today(ms("2027-01-17T00:00:00")) == 0
    assert spool.ledger.uploaded_per_day(1, now) == [DailyUpload(date(2027, 1, 16), c)]


def test_days_without_uploads_are_zero(spool: Spool) -> None:
    now = ms("2027-03-10T10:00:00")
    days = spool.ledger.uploaded_per_day(4, now)
    assert [d.day.isoformat() for d in days] == [
        "2027-03-07",
        "2027-03-08",
        "2027-03-09",
        "2027-03-10",
    ]
    assert all(d.bytes_uploaded == 0 for d in days)


def test_the_report_is_the_control_api_ledger_result(spool: Spool) -> None:
    now = ms("2027-01-16T08:00:00")
    size = upload(spool, 1, now - 60_000)
    report = spool.ledger.report(2, now, daily_budget=50 * 2**20)
    assert set(report) == {"batches", "daily"}
    assert [b["seq"] for b in report["batches"]] == [1]
    assert report["daily"] == [
        {"day": "2027-01-15", "bytes_uploaded": 0, "budget": 50 * 2**20},
        {"day": "2027-01-16", "bytes_uploaded": size, "budget": 50 * 2**20},
    ]


def test_discarded_and_dead_batches_show_their_state(spool: Spool) -> None:
    spool.put(make_sealed(1), now_ms=T0_MS, hold_until_ms=T0_MS)
    spool.put(make_sealed(2), now_ms=T0_MS, hold_until_ms=T0_MS + DAY_MS)
    batch = spool.next_ready(T0_MS)
    assert batch is not None
    spool.dead_letter(batch, now_ms=T0_MS, status=413, error="too large")
    spool.discard(T0_MS + 2 * MINUTE_MS, T0_MS + 10 * MINUTE_MS)
    states = {e.seq: e.state.value for e in spool.ledger.recent(1, T0_MS)}
    assert states == {1: "dead", 2: "discarded"}
