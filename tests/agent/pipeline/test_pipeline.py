from __future__ import annotations

from collections.abc import Sequence
from itertools import count
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from agent.events import (
    AppIdentity,
    FocusChange,
    Frame,
    Gap,
    KeyEvent,
    MouseButton,
    MouseMove,
    MouseScroll,
    Rect,
    SourceEvent,
    WindowInfo,
)
from agent.pipeline.batcher import Batcher
from agent.pipeline.decision import Decision, Reason
from agent.pipeline.pipeline import Action, BatchReady, Pipeline
from agent.pipeline.screens import GrabRequest, Trigger
from agent.sinks.base import Sink
from agent.sinks.directory import DirectorySink, load_batches
from agent.sinks.memory import MemorySink
from overt.wire.batch import Batch
from overt.wire.body import decode_body
from overt.wire.frames import reassemble
from overt.wire.records import (
    ClickRecord,
    ContextRecord,
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
    to_ms,
)
from policies.model import KeyMode, Redaction, Screenshots, TitleAction

T = 1_800_000_000.0
WIN = WindowInfo(
    7, AppIdentity(process_name="editor"), "Report - bob@example.com", Rect(100, 50, 640, 480)
)
OTHER = WindowInfo(9, AppIdentity(process_name="chat"), "Chat", Rect(0, 0, 300, 300))
SHOTS = Screenshots(min_interval_seconds=1.0, max_per_minute=30, quality=95)
CAPTURE = Decision(
    capture=True,
    reason=Reason.CAPTURING,
    app_id="editor",
    keys=KeyMode.TEXT,
    mouse=True,
    screenshots=SHOTS,
    title=TitleAction.KEEP,
)
NOT_ALLOWED = Decision(capture=False, reason=Reason.NOT_ALLOWED)


def pipeline(**kw: object) -> Pipeline:
    ids = count()
    batcher = Batcher(
        device_id="dev-1",
        policy_version=1,
        dataset_key_id="ds",
        new_id=lambda: f"{next(ids):032x}",
        **kw,  # type: ignore[arg-type]
    )
    return Pipeline(redaction=Redaction(), batcher=batcher)


def typed(text: str, t0: float, step: float = 0.1) -> list[KeyEvent]:
    out = []
    for i, ch in enumerate(text):
        key = "space" if ch == " " else ch
        out += [
            KeyEvent(t0 + i * step, key, True, ch),
            KeyEvent(t0 + i * step + 0.05, key, False, ch),
        ]
    return out


def feed_all(
    p: Pipeline, events: list[SourceEvent], decision: Decision, window: WindowInfo | None
) -> list[Action]:
    out: list[Action] = []
    for ev in events:
        out += p.feed(ev, decision, window, ev.t)
    return out


def records_of(batches: list[Batch]) -> list[Record]:
    out: list[Record] = []
    for b in batches:
        out += decode_body(b.body)[0]
    return out


def test_not_captured_decision_yields_zero_records() -> None:
    p = pipeline()
    events: list[SourceEvent] = [
        FocusChange(T, OTHER),
        *[MouseMove(T + i / 1000, 10 + i, 10) for i in range(500)],
        MouseButton(T + 1, 20, 20, "left", True),
        MouseButton(T + 1.1, 20, 20, "left", False),
        MouseScroll(T + 1.2, 20, 20, 0, -1),
        *typed("private message", T + 2),
        Gap(T + 5, "queue_overflow", 3),
    ]
    actions = feed_all(p, events, NOT_ALLOWED, OTHER)
    assert actions == []
    assert p.tick(T + 100) == []
    assert p.flush(T + 100) == []


def test_end_to_end_records_are_window_relative_and_minimised() -> None:
    p = pipeline()
    actions = p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)
    assert actions == [GrabRequest(WIN, Trigger.FOCUS, T)]
    moves: list[SourceEvent] = [MouseMove(T + 0.5 + i / 1000, 300 + i, 250) for i in range(200)]
    feed_all(p, moves, CAPTURE, WIN)
    press = MouseButton(T + 0.75, 499, 250, "left", True)
    assert p.feed(press, CAPTURE, WIN, press.t) == []  # within min_interval: deferred
    p.feed(MouseButton(T + 0.8, 499, 250, "left", False), CAPTURE, WIN, T + 0.8)
    assert p.tick(T + 1.0) == [GrabRequest(WIN, Trigger.PRESS, T + 1.0)]
    feed_all(p, typed("hello", T + 1), CAPTURE, WIN)
    p.feed(MouseScroll(T + 2, 200, 150, 0, -2), CAPTURE, WIN, T + 2)
    batches = p.flush(T + 3)
    assert len(batches) == 1
    recs = records_of(batches)
    ctx = recs[0]
    assert ctx == ContextRecord(
        to_ms(T), "editor", "Report - [EMAIL]", TitleState.MASKED, 100, 50, 640, 480, 1.0
    )
    approach = recs[1]
    assert isinstance(approach, MousePathRecord)
    assert approach.kind is PathKind.APPROACH
    assert approach.points()[-1][1:] == (399, 200)
    assert approach.dt == (30,) * 6 + (19,)  # every 30 ms, then the last move
    assert approach.dx == (30,) * 6 + (19,)  # 1 px per ms
    assert recs[2:] == [
        ClickRecord(to_ms(T + 0.75), "left", True, 399, 200),
        ClickRecord(to_ms(T + 0.8), "left", False, 399, 200),
        ScrollRecord(to_ms(T + 2), 100, 100, 0, -2),
        # flush closes what was in progress: the span, and the pointer's rest
        TextSpanRecord(to_ms(T + 1), to_ms(T + 1.4), "hello", 0),
        MousePathRecord(to_ms(T + 0.8), PathKind.HOVER, 399, 200, (), (), (), 2200),
    ]
    h = batches[0].header
    assert (h.counts.clicks, h.counts.text_spans, h.counts.scrolls) == (1, 1, 1)
    assert h.app_ids == ("editor",)


def test_hello_world_then_copy_per_key_mode() -> None:
    events = [
        *typed("hello world", T + 1),
        KeyEvent(T + 2.3, "ctrl", True),
        KeyEvent(T + 2.4, "c", True, "\x03"),
        KeyEvent(T + 2.45, "c", False, "\x03"),
        KeyEvent(T + 2.5, "ctrl", False),
    ]
    results = {}
    for mode in KeyMode:
        p = pipeline()
        decision = Decision(
            capture=True, reason=Reason.CAPTURING, app_id="editor", keys=mode, mouse=True
        )
        feed_all(p, list(events), decision, WIN)
        recs = records_of(p.flush(T + 10))
        results[mode] = [r for r in recs if not isinstance(r, ContextRecord)]
    assert results[KeyMode.TEXT] == [
        TextSpanRecord(to_ms(T + 1), to_ms(T + 2.0), "hello world", 0),
        ShortcutRecord(to_ms(T + 2.4), "ctrl+c"),
    ]
    shortcut_keys = [r.key for r in results[KeyMode.SHORTCUTS] if isinstance(r, ShortcutRecord)]
    assert shortcut_keys == ["<letter>"] * 5 + ["<space>"] + ["<letter>"] * 5 + ["ctrl+c"]
    assert len(results[KeyMode.TIMING]) == len(events)
    assert results[KeyMode.NONE] == []


def test_moving_to_a_window_not_captured_ends_the_span_without_joining_its_keys() -> None:
    p = pipeline()
    feed_all(p, typed("half a sec", T), CAPTURE, WIN)
    p.feed(FocusChange(T + 0.8, OTHER), NOT_ALLOWED, OTHER, T + 0.8)
    feed_all(p, typed("not yours", T + 0.9), NOT_ALLOWED, OTHER)
    p.feed(FocusChange(T + 3, WIN), CAPTURE, WIN, T + 3)
    spans = [r.text for r in records_of(p.flush(T + 4)) if isinstance(r, TextSpanRecord)]
    assert spans == ["half a sec"]


def test_pausing_drops_the_text_span_in_progress() -> None:
    p = pipeline()
    feed_all(p, typed("half a sec", T), CAPTURE, WIN)
    p.drop_buffered()
    p.feed(FocusChange(T + 3, WIN), CAPTURE, WIN, T + 3)
    recs = records_of(p.flush(T + 4))
    assert not any(isinstance(r, TextSpanRecord) for r in recs)


def test_focus_change_and_click_flush_the_span() -> None:
    p = pipeline()
    feed_all(p, typed("abc", T), CAPTURE, WIN)
    p.feed(MouseButton(T + 0.4, 150, 60, "left", True), CAPTURE, WIN, T + 0.4)
    feed_all(p, typed("de", T + 0.5), CAPTURE, WIN)
    p.feed(FocusChange(T + 0.8, WIN), CAPTURE, WIN, T + 0.8)
    spans = [r.text for r in records_of(p.flush(T + 1)) if isinstance(r, TextSpanRecord)]
    assert spans == ["abc", "de"]


def test_typing_pause_flushes_on_tick_and_requests_a_screenshot() -> None:
    p = pipeline()
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)  # grabs at T
    feed_all(p, typed("ab ", T + 5), CAPTURE, WIN)  # a word and its space: not held
    assert p.tick(T + 5.6) == []
    assert p.tick(T + 5.7) == [GrabRequest(WIN, Trigger.TYPING_PAUSE, T + 5.7)]
    assert p.tick(T + 6.1) == []
    assert p.batcher.pending == 1
    assert p.tick(T + 6.2) == []  # the span is flushed into the open batch
    assert p.batcher.pending == 2


def test_actions_only_keeps_no_title_and_takes_no_screenshot() -> None:
    p = pipeline()
    chat = Decision(
        capture=True,
        reason=Reason.CAPTURING,
        app_id="chat",
        keys=KeyMode.SHORTCUTS,
        mouse=True,
        screenshots=SHOTS,
        title=TitleAction.KEEP,
        actions_only=True,
    )
    actions = p.feed(FocusChange(T, OTHER), chat, OTHER, T)
    actions += p.feed(MouseButton(T + 1, 5, 5, "left", True), chat, OTHER, T + 1)
    assert actions == []
    frame = Frame(T + 1, 9, OTHER.rect, 10, 10, b"\x00" * 300)
    assert p.feed_frame(frame, chat, T + 1) == []
    [ctx, click] = records_of(p.flush(T + 2))
    assert isinstance(ctx, ContextRecord)
    assert ctx.title is None
    assert ctx.title_state is TitleState.DROPPED
    assert isinstance(click, ClickRecord)


def test_mouse_not_allowed_records_no_pointer() -> None:
    p = pipeline()
    d = Decision(capture=True, reason=Reason.CAPTURING, app_id="editor", keys=KeyMode.SHORTCUTS)
    feed_all(p, [MouseMove(T + i / 100, 200 + i, 200) for i in range(50)], d, WIN)
    p.feed(MouseButton(T + 1, 250, 200, "left", True), d, WIN, T + 1)
    p.feed(MouseScroll(T + 1.5, 250, 200, 0, 1), d, WIN, T + 1.5)
    p.feed(KeyEvent(T + 2, "enter", True), d, WIN, T + 2)
    recs = records_of(p.flush(T + 3))
    assert [type(r) for r in recs] == [ContextRecord, ShortcutRecord]


def test_drop_buffered_drops_the_open_batch_and_pause_marker_has_no_detail() -> None:
    p = pipeline()
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)
    feed_all(p, typed("draft", T + 1), CAPTURE, WIN)
    p.feed(MouseButton(T + 2, 150, 60, "left", True), CAPTURE, WIN, T + 2)
    assert p.drop_buffered() >= 2
    actions = p.marker(MarkerKind.PAUSE_START, T + 2.1)
    actions += p.marker(MarkerKind.PAUSE_END, T + 1800)  # the open batch is old by now
    batches = [a.batch for a in actions if isinstance(a, BatchReady)] + p.flush(T + 1801)
    assert records_of(batches) == [
        MarkerRecord(to_ms(T + 2.1), MarkerKind.PAUSE_START),
        MarkerRecord(to_ms(T + 1800), MarkerKind.PAUSE_END),
    ]


def test_gap_becomes_a_marker_with_reason_and_count() -> None:
    p = pipeline()
    p.feed(Gap(T, "queue_overflow", 12), CAPTURE, WIN, T)
    recs = records_of(p.flush(T + 1))
    assert recs[-1] == MarkerRecord(to_ms(T), MarkerKind.GAP, "queue_overflow", 12)


def test_batches_come_out_by_age_and_each_starts_with_its_context() -> None:
    p = pipeline(max_age_s=60)
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)
    out: list[Action] = []
    for i in range(1, 200):
        t = T + i
        out += p.feed(MouseButton(t, 150, 60, "left", i % 2 == 1), CAPTURE, WIN, t)
    batches = [a.batch for a in out if isinstance(a, BatchReady)]
    assert len(batches) == 3
    for b in batches:
        first = decode_body(b.body)[0][0]
        assert isinstance(first, ContextRecord)
        assert first.app_id == "editor"
        assert b.header.end_ms - b.header.start_ms <= 61_000
    assert [b.header.seq for b in batches] == [0, 1, 2]


def _frame(img: Image.Image, t: float) -> Frame:
    return Frame(t, WIN.window_id, WIN.rect, img.width, img.height, img.tobytes())


def test_frames_become_a_keyframe_and_deltas_that_reassemble() -> None:
    p = pipeline()
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)
    img = Image.new("RGB", (640, 480), (250, 250, 250))
    ImageDraw.Draw(img).rectangle((20, 20, 300, 40), fill=(20, 20, 20))
    p.feed_frame(_frame(img, T + 0.1), CAPTURE, T + 0.1)
    p.feed_frame(_frame(img, T + 0.2), CAPTURE, T + 0.2)  # unchanged: skipped
    img2 = img.copy()
    ImageDraw.Draw(img2).rectangle((400, 400, 420, 420), fill=(200, 0, 0))
    p.feed_frame(_frame(img2, T + 2), CAPTURE, T + 2)
    [batch] = p.flush(T + 3)
    recs, images = decode_body(batch.body)
    shots = [r for r in recs if isinstance(r, ScreenshotRecord)]
    assert [s.kind for s in shots] == [ScreenshotKind.KEYFRAME, ScreenshotKind.DELTA]
    assert batch.header.counts.screenshots == 2
    out = reassemble(images[shots[0].image], [(shots[1], images[shots[1].image])])
    px = out.getpixel((410, 410))
    assert isinstance(px, tuple)
    assert px[0] > 150
    assert px[1] < 60


def test_first_screenshot_of_a_new_batch_is_a_keyframe() -> None:
    p = pipeline()
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)
    img = Image.new("RGB", (640, 480), (250, 250, 250))
    p.feed_frame(_frame(img, T), CAPTURE, T)
    p.flush(T + 1)
    img2 = img.copy()
    ImageDraw.Draw(img2).rectangle((10, 10, 20, 20), fill=(0, 0, 0))
    p.feed_frame(_frame(img2, T + 2), CAPTURE, T + 2)
    [batch] = p.flush(T + 3)
    shots = [r for r in decode_body(batch.body)[0] if isinstance(r, ScreenshotRecord)]
    assert [s.kind for s in shots] == [ScreenshotKind.KEYFRAME]


def test_frames_without_screenshot_permission_are_ignored() -> None:
    p = pipeline()
    d = Decision(capture=True, reason=Reason.CAPTURING, app_id="editor", mouse=True)
    img = Image.new("RGB", (64, 64))
    assert p.feed_frame(_frame(img, T), d, T) == []
    assert p.feed_frame(_frame(img, T), NOT_ALLOWED, T) == []
    assert p.flush(T + 1) == []


def test_policy_change_closes_the_batch_and_marks_the_change() -> None:
    p = pipeline()
    feed_all(p, typed("abc", T), CAPTURE, WIN)
    actions = p.policy_changed(Redaction(builtin=()), 2, "ds2", T + 1)
    [old] = [a.batch for a in actions if isinstance(a, BatchReady)]
    assert old.header.policy_version == 1
    assert any(isinstance(r, TextSpanRecord) for r in records_of([old]))
    [new] = p.flush(T + 2)
    assert new.header.policy_version == 2
    assert records_of([new]) == [MarkerRecord(to_ms(T + 1), MarkerKind.POLICY_CHANGE, "2")]


def test_sinks_take_batches(tmp_path: Path) -> None:
    p = pipeline()
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)
    feed_all(p, typed("hi", T + 1), CAPTURE, WIN)
    batches = p.flush(T + 2)
    memory, directory = MemorySink(), DirectorySink(tmp_path / "out")
    sinks: list[Sink] = [memory, directory]
    for sink in sinks:
        assert isinstance(sink, Sink)
        for b in batches:
            sink.write(b)
    assert memory.batches == batches
    loaded = load_batches(tmp_path / "out")
    assert [(h["batch_id"], body) for h, body in loaded] == [
        (b.header.batch_id, b.body) for b in batches
    ]
    assert loaded[0][0]["format"] == 1
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_directory_sink_ignores_an_orphan_body(tmp_path: Path) -> None:
    (tmp_path / "000000000001-x.body.zst").write_bytes(b"partial")
    assert load_batches(tmp_path) == []


def test_focus_away_and_back_continues_the_chain_within_a_batch() -> None:
    p = pipeline()
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)
    img = Image.new("RGB", (640, 480), (250, 250, 250))
    p.feed_frame(_frame(img, T + 0.1), CAPTURE, T + 0.1)
    p.feed(FocusChange(T + 1, OTHER), NOT_ALLOWED, OTHER, T + 1)
    p.feed(FocusChange(T + 2, WIN), CAPTURE, WIN, T + 2)
    img2 = img.copy()
    ImageDraw.Draw(img2).rectangle((10, 10, 20, 20), fill=(0, 0, 0))
    p.feed_frame(_frame(img2, T + 2.1), CAPTURE, T + 2.1)
    [batch] = p.flush(T + 3)
    recs, images = decode_body(batch.body)
    assert sum(isinstance(r, ContextRecord) for r in recs) == 2
    shots = [r for r in recs if isinstance(r, ScreenshotRecord)]
    assert [s.kind for s in shots] == [ScreenshotKind.KEYFRAME, ScreenshotKind.DELTA]
    assert shots[1].base == shots[0].image
    out = reassemble(images[shots[0].image], [(shots[1], images[shots[1].image])])
    assert out.getpixel((15, 15)) == pytest.approx((0, 0, 0), abs=60)


# -- capture going off --------------------------------------------------------

STOP, RESUME = T + 10, T + 100


def _spanning_the_off_period(recs: list[Record]) -> list[Record]:
    """Pointer paths and text spans that begin before STOP and end after it."""
    out: list[Record] = []
    for r in recs:
        if isinstance(r, MousePathRecord):
            start, end = r.t, r.points()[-1][0] + r.dwell_ms
        elif isinstance(r, TextSpanRecord):
            start, end = r.t, r.end
        else:
            continue
        if start < to_ms(RESUME) and end > to_ms(STOP):
            out.append(r)
    return out


def _records_around_a_stop(
    before: Sequence[SourceEvent], after: Sequence[SourceEvent]
) -> list[Record]:
    """``before``, capture stopped at STOP, resumed by a focus change at RESUME, ``after``."""
    p = pipeline()
    batches: list[Batch] = []
    for ev in [FocusChange(T, WIN), *before]:
        batches += [a.batch for a in p.feed(ev, CAPTURE, WIN, ev.t) if isinstance(a, BatchReady)]
    batches += p.stop_capture(STOP)
    for ev in [FocusChange(RESUME, WIN), *after]:
        batches += [a.batch for a in p.feed(ev, CAPTURE, WIN, ev.t) if isinstance(a, BatchReady)]
    batches += p.flush(RESUME + 20)
    return records_of(batches)


def test_a_pointer_at_rest_when_capture_stops_rests_no_longer_than_until_the_stop() -> None:
    recs = _records_around_a_stop(
        [MouseMove(T + 1 + i / 100, 300 + i, 200) for i in range(20)],
        [KeyEvent(RESUME + 5, "enter", True), KeyEvent(RESUME + 5.1, "enter", False)],
    )
    assert _spanning_the_off_period(recs) == []
    [hover] = [r for r in recs if isinstance(r, MousePathRecord) and r.kind is PathKind.HOVER]
    assert hover.t + hover.dwell_ms == to_ms(STOP)


def test_moving_on_after_capture_resumes_ends_no_rest_that_began_before_it() -> None:
    recs = _records_around_a_stop(
        [MouseMove(T + 1, 300, 200)],
        [MouseMove(RESUME + 1 + i / 100, 300 + 10 * i, 200) for i in range(20)],
    )
    assert _spanning_the_off_period(recs) == []


def test_a_drag_under_way_when_capture_stops_is_not_joined_to_the_release_after() -> None:
    recs = _records_around_a_stop(
        [
            MouseButton(T + 1, 300, 200, "left", True),
            *[MouseMove(T + 1.1 + i / 100, 300 + i, 200) for i in range(20)],
        ],
        [
            *[MouseMove(RESUME + 1 + i / 100, 400 + i, 300) for i in range(20)],
            MouseButton(RESUME + 2, 420, 300, "left", False),
        ],
    )
    assert _spanning_the_off_period(recs) == []
    assert not any(isinstance(r, MousePathRecord) and r.kind is PathKind.DRAG for r in recs)


def test_text_typed_before_and_after_capture_stops_is_two_spans() -> None:
    recs = _records_around_a_stop(typed("abc", T + 1), typed("def", RESUME + 1))
    assert _spanning_the_off_period(recs) == []
    assert [r.text for r in recs if isinstance(r, TextSpanRecord)] == ["abc", "def"]


def test_a_screenshot_deferred_when_capture_stops_is_never_taken() -> None:
    p = pipeline()
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)  # grabs at T
    deferred = p.feed(MouseButton(T + 0.5, 300, 200, "left", True), CAPTURE, WIN, T + 0.5)
    assert deferred == []  # within min_interval: to be taken at T + 1
    p.stop_capture(T + 0.6)
    assert p.tick(T + 1.5) == []
    assert p.tick(RESUME) == []


def test_the_first_screenshot_after_capture_resumes_is_a_keyframe() -> None:
    p = pipeline()
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)
    img = Image.new("RGB", (640, 480), (250, 250, 250))
    p.feed_frame(_frame(img, T + 0.1), CAPTURE, T + 0.1)
    p.stop_capture(STOP)
    p.feed(FocusChange(RESUME, WIN), CAPTURE, WIN, RESUME)
    img2 = img.copy()
    ImageDraw.Draw(img2).rectangle((10, 10, 20, 20), fill=(0, 0, 0))
    p.feed_frame(_frame(img2, RESUME + 0.1), CAPTURE, RESUME + 0.1)
    [batch] = p.flush(RESUME + 1)
    shots = [r for r in decode_body(batch.body)[0] if isinstance(r, ScreenshotRecord)]
    assert [s.kind for s in shots] == [ScreenshotKind.KEYFRAME]


def test_the_first_record_after_capture_resumes_comes_with_its_context() -> None:
    p = pipeline()
    p.feed(MouseButton(T + 1, 300, 200, "left", True), CAPTURE, WIN, T + 1)
    p.feed(MouseButton(T + 1.1, 300, 200, "left", False), CAPTURE, WIN, T + 1.1)
    p.stop_capture(STOP)
    p.feed(MouseButton(RESUME, 300, 200, "left", True), CAPTURE, WIN, RESUME)
    recs = records_of(p.flush(RESUME + 1))
    assert isinstance(recs[0], ContextRecord)
    assert recs[0].t == to_ms(RESUME)


def test_pointer_hidden_ends_the_rest_at_that_moment() -> None:
    p = pipeline()
    p.feed(FocusChange(T, WIN), CAPTURE, WIN, T)
    p.feed(MouseMove(T + 1, 300, 200), CAPTURE, WIN, T + 1)
    p.pointer_hidden(T + 3, T + 3)
    # The pointer has not moved, but its spot was covered: no rest goes on.
    p.feed(MouseMove(T + 8, 500, 200), CAPTURE, WIN, T + 8)
    hovers = [
        r
        for r in records_of(p.flush(T + 9))
        if isinstance(r, MousePathRecord) and r.kind is PathKind.HOVER
    ]
    assert [(h.t, h.dwell_ms) for h in hovers] == [(to_ms(T + 1), 2000), (to_ms(T + 8), 1000)]
