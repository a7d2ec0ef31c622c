"""The batcher (``agent.pipeline.batcher``): when a batch closes, what its
header says, and how each batch reads on its own (the carried context)."""

from __future__ import annotations

from itertools import count

import pytest

from agent.pipeline.batcher import Batcher
from overt.wire.batch import SignalCounts
from overt.wire.body import decode_body
from overt.wire.records import (
    ClickRecord,
    ContextRecord,
    KeyTimingRecord,
    MarkerKind,
    MarkerRecord,
    MousePathRecord,
    PathKind,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
    ScrollRecord,
    ShortcutRecord,
    TextSpanRecord,
    TitleState,
)

T_MS = 1_800_000_000_000
T = T_MS / 1000


def batcher(**kw: object) -> Batcher:
    ids = count()
    args: dict[str, object] = {
        "device_id": "dev-1",
        "policy_version": 3,
        "dataset_key_id": "ds-2026",
        "next_seq": 10,
        "new_id": lambda: f"{next(ids):032x}",
    }
    args.update(kw)
    return Batcher(**args)  # type: ignore[arg-type]


def test_batch_is_emitted_when_old_enough() -> None:
    b = batcher(max_age_s=60)
    assert b.add(ClickRecord(T_MS, "left", True, 1, 1), T) is None
    assert b.add(ClickRecord(T_MS + 30_000, "left", False, 1, 1), T + 30) is None
    assert b.due == pytest.approx(T + 60)
    assert b.flush(T + 59.9) is None
    batch = b.flush(T + 60)
    assert batch is not None
    assert batch.header.seq == 10
    assert b.next_seq == 11
    assert b.flush(T + 200) is None


def test_add_past_the_age_emits_including_the_record() -> None:
    b = batcher(max_age_s=60)
    b.add(ClickRecord(T_MS, "left", True, 1, 1), T)
    batch = b.add(ClickRecord(T_MS + 61_000, "left", False, 1, 1), T + 61)
    assert batch is not None
    recs, _ = decode_body(batch.body)
    assert len(recs) == 2
    assert b.pending == 0


def test_batch_is_emitted_when_large_enough() -> None:
    b = batcher(max_bytes=1000)
    emitted = []
    for i in range(200):
        out = b.add(TextSpanRecord(T_MS + i, T_MS + i, "x" * 40, 0), T + i / 1000)
        if out is not None:
            emitted.append(out)
    assert len(emitted) >= 5
    assert [e.header.seq for e in emitted] == list(range(10, 10 + len(emitted)))
    assert len({e.header.batch_id for e in emitted}) == len(emitted)


def test_image_bytes_count_towards_size() -> None:
    b = batcher(max_bytes=10_000)
    shot = ScreenshotRecord(T_MS, ScreenshotKind.KEYFRAME, "img1", 10, 10, 10, 10)
    batch = b.add(shot, T, b"\x00" * 20_000)
    assert batch is not None
    _, images = decode_body(batch.body)
    assert images == {"img1": b"\x00" * 20_000}


def test_header_counts_time_range_and_apps() -> None:
    b = batcher()
    recs: list[Record] = [
        ContextRecord(T_MS, "editor", None, TitleState.DROPPED, 0, 0, 10, 10, 1.0),
        MousePathRecord(T_MS + 1, PathKind.APPROACH, 0, 0, (5, 5), (1, 1), (1, 1), 20),
        ClickRecord(T_MS + 11, "left", True, 2, 2),
        ClickRecord(T_MS + 60, "left", False, 2, 2),
        ScrollRecord(T_MS + 70, 2, 2, 0, -3),
        TextSpanRecord(T_MS + 100, T_MS + 900, "[EMAIL] hi", 1),
        ShortcutRecord(T_MS + 950, "ctrl+s"),
        KeyTimingRecord(T_MS + 960, True),
        ContextRecord(T_MS + 970, "sheets", "Q3", TitleState.KEPT, 0, 0, 10, 10, 2.0),
        ScreenshotRecord(T_MS + 980, ScreenshotKind.KEYFRAME, "i", 1, 1, 1, 1),
        MarkerRecord(T_MS + 990, MarkerKind.CONSENT, "granted"),
    ]
    for r in recs:
        assert b.add(r, T) is None
    batch = b.flush(T, force=True)
    assert batch is not None
    h = batch.header
    assert h.counts == SignalCounts(
        clicks=1,
        scrolls=1,
        paths=1,
        path_samples=3,
        text_spans=1,
        redactions=1,
        shortcuts=1,
        key_timings=1,
        contexts=2,
        screenshots=1,
        markers=1,
    )
    assert (h.start_ms, h.end_ms) == (T_MS, T_MS + 990)
    assert h.app_ids == ("editor", "sheets")
    assert h.body_size == len(batch.body)
    assert (h.device_id, h.policy_version, h.dataset_key_id) == ("dev-1", 3, "ds-2026")
    assert decode_body(batch.body)[0] == recs


def test_new_batch_starts_with_the_carried_context() -> None:
    b = batcher()
    ctx = ContextRecord(T_MS, "editor", "doc", TitleState.KEPT, 0, 0, 10, 10, 1.0)
    b.context = ctx
    b.add(ctx, T)
    first = b.flush(T, force=True)
    assert first is not None
    b.add(ClickRecord(T_MS + 5000, "left", True, 1, 1), T + 5)
    second = b.flush(T + 5, force=True)
    assert second is not None
    recs, _ = decode_body(second.body)
    assert recs[0] == ContextRecord(
        T_MS + 5000, "editor", "doc", TitleState.KEPT, 0, 0, 10, 10, 1.0
    )
    assert second.header.app_ids == ("editor",)


def test_drop_discards_the_open_batch() -> None:
    b = batcher()
    b.add(ClickRecord(T_MS, "left", True, 1, 1), T)
    assert b.drop() == 1
    assert b.flush(T + 1000, force=True) is None
    assert b.next_seq == 10


def test_policy_change_closes_the_batch_under_the_old_policy() -> None:
    b = batcher()
    b.add(ClickRecord(T_MS, "left", True, 1, 1), T)
    old = b.set_policy(4, "ds-2027")
    assert old is not None
    assert (old.header.policy_version, old.header.dataset_key_id) == (3, "ds-2026")
    b.add(ClickRecord(T_MS + 1, "left", False, 1, 1), T)
    new = b.flush(T, force=True)
    assert new is not None
    assert (new.header.policy_version, new.header.dataset_key_id) == (4, "ds-2027")
