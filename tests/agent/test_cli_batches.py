"""``overt agent batches DIR --json --frames OUT`` on batches the real Batcher,
FrameEncoder and DirectorySink wrote: every record kind with its fields, the
reassembled frames, and what happens to missing bases and corrupt files."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, fields
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from agent import cli, cli_batches
from agent.events import FocusChange, Frame, MouseButton, Rect
from agent.pipeline.batcher import Batcher
from agent.pipeline.screens import EncodedFrame, FrameEncoder
from agent.sinks.directory import BODY_SUFFIX, HEADER_SUFFIX, DirectorySink
from overt.wire.batch import Batch
from overt.wire.body import BODY_FORMAT
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
    ScrollRecord,
    ShortcutRecord,
    TextSpanRecord,
    TitleState,
)
from policies.model import Screenshots
from tests.collector.export._batches import EDITOR, PngCodec, Recorder, decision, screen

T_MS = 1_800_000_000_000
T = T_MS / 1000
SHOTS = Screenshots(min_interval_seconds=1.0, max_per_minute=60, quality=95)
RED, BLUE = (200, 30, 30), (20, 40, 220)
W, H = 64, 48

CONTEXT = ContextRecord(T_MS, "editor", "Report.odt", TitleState.KEPT, 100, 50, 640, 480, 1.25)
ACTIONS: tuple[Record, ...] = (
    ClickRecord(T_MS + 10, "left", True, 12, 34),
    ClickRecord(T_MS + 90, "left", False, 13, 35),
    ScrollRecord(T_MS + 200, 40, 41, 0, -3),
    MousePathRecord(T_MS + 300, PathKind.DRAG, 5, 6, (30, 30), (2, -1), (0, 4), 120),
    TextSpanRecord(T_MS + 500, T_MS + 900, "weekly numbers <EMAIL>", 1),
    ShortcutRecord(T_MS + 1000, "ctrl+s"),
    KeyTimingRecord(T_MS + 1100, True),
    KeyTimingRecord(T_MS + 1150, False),
    MarkerRecord(T_MS + 1200, MarkerKind.GAP, "queue full", 7),
)


def red_then_blue_square() -> tuple[EncodedFrame, EncodedFrame]:
    """A keyframe of a red window and a delta that paints a blue square on it."""
    encoder = FrameEncoder(codec=PngCodec())
    red = Image.new("RGB", (W, H), RED)
    square = red.copy()
    square.paste(BLUE, (20, 16, 30, 26))
    out = []
    for i, img in enumerate((red, square)):
        frame = Frame(T + 1.3 + i / 10, 7, Rect(100, 50, W, H), W, H, img.tobytes())
        encoded = encoder.encode(frame, SHOTS)
        assert encoded is not None
        out.append(encoded)
    key, delta = out
    assert key.record.kind is ScreenshotKind.KEYFRAME
    assert delta.record.kind is ScreenshotKind.DELTA
    return key, delta


def batcher(seq: int) -> Batcher:
    ids = count(1)
    return Batcher(
        device_id="0f" * 16,
        policy_version=3,
        dataset_key_id="ds-2027",
        next_seq=seq,
        new_id=lambda: f"{seq:02d}{next(ids):030x}",
    )


def write(
    directory: Path, seq: int, records: tuple[Record, ...], frames: tuple[EncodedFrame, ...] = ()
) -> Batch:
    b = batcher(seq)
    for rec in records:
        assert b.add(rec, T) is None
    for f in frames:
        assert b.add(f.record, T, f.image) is None
    batch = b.flush(T, force=True)
    assert batch is not None
    DirectorySink(directory).write(batch)
    return batch


def stem(batch: Batch) -> str:
    return f"{batch.header.seq:012d}-{batch.header.batch_id}"


def batches(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overt", "agent", "batches", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


@dataclass(frozen=True)
class Capture:
    """A sink holding one batch of every record kind and two screenshots."""

    sink: Path
    batch: Batch
    key: EncodedFrame
    delta: EncodedFrame


@pytest.fixture
def capture(tmp_path: Path) -> Capture:
    key, delta = red_then_blue_square()
    batch = write(tmp_path / "sink", 4, (CONTEXT, *ACTIONS), (key, delta))
    return Capture(tmp_path / "sink", batch, key, delta)


def test_every_record_kind_is_one_json_line_with_its_fields(
    capture: Capture, tmp_path: Path
) -> None:
    sink, batch, key, delta = capture.sink, capture.batch, capture.key, capture.delta
    result = batches(sink, "--json", "--frames", tmp_path / "frames")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    head, *docs = lines(result.stdout)
    h = batch.header
    assert head == {
        "kind": "batch",
        "file": stem(batch) + HEADER_SUFFIX,
        "batch": h.batch_id,
        "seq": 4,
        "device_id": "0f" * 16,
        "start_ms": T_MS,
        "end_ms": h.end_ms,
        "policy_version": 3,
        "dataset_key_id": "ds-2027",
        "app_ids": ["editor"],
        "counts": {f.name: getattr(h.counts, f.name) for f in fields(h.counts)},
        "format": 1,
        "body_size": len(batch.body),
        "body_format": BODY_FORMAT,
        "records": 12,
        "images": 2,
        "image_bytes": len(key.image) + len(delta.image),
        "error": None,
    }
    assert [d["kind"] for d in docs] == [
        "context", "click", "click", "scroll", "path", "text", "shortcut",
        "key_timing", "key_timing", "marker", "screenshot", "screenshot",
    ]  # fmt: skip
    assert [(d["batch"], d["seq"], d["index"]) for d in docs] == [
        (h.batch_id, 4, i) for i in range(12)
    ]
    # Each record's own fields, as stored: window-relative coordinates, epoch ms.
    own = [{k: v for k, v in d.items() if k not in {"kind", "batch", "seq", "index"}} for d in docs]
    assert own[:10] == [
        {"t": T_MS, "app_id": "editor", "title": "Report.odt", "title_state": "kept",
         "x": 100, "y": 50, "width": 640, "height": 480, "scale": 1.25},
        {"t": T_MS + 10, "button": "left", "pressed": True, "x": 12, "y": 34},
        {"t": T_MS + 90, "button": "left", "pressed": False, "x": 13, "y": 35},
        {"t": T_MS + 200, "x": 40, "y": 41, "dx": 0, "dy": -3},
        {"t": T_MS + 300, "path_kind": "drag", "x": 5, "y": 6, "dt": [30, 30],
         "dx": [2, -1], "dy": [0, 4], "dwell_ms": 120,
         "points": [[T_MS + 300, 5, 6], [T_MS + 330, 7, 6], [T_MS + 360, 6, 10]]},
        {"t": T_MS + 500, "end": T_MS + 900, "text": "weekly numbers <EMAIL>",
         "redactions": 1},
        {"t": T_MS + 1000, "key": "ctrl+s"},
        {"t": T_MS + 1100, "pressed": True},
        {"t": T_MS + 1150, "pressed": False},
        {"t": T_MS + 1200, "marker_kind": "gap", "detail": "queue full", "count": 7},
    ]  # fmt: skip
    shot, shot2 = docs[10], docs[11]
    assert shot == {
        "kind": "screenshot", "batch": h.batch_id, "seq": 4, "index": 10,
        "t": key.record.t, "screenshot_kind": "keyframe", "image": key.record.image,
        "width": W, "height": H, "source_width": W, "source_height": H, "base": None,
        "tile": 0, "columns": 0, "tiles": [], "image_bytes": len(key.image),
        "png": f"{stem(batch)}-000010.png", "frame_error": None,
    }  # fmt: skip
    assert shot2["screenshot_kind"] == "delta"
    assert shot2["base"] == key.record.image
    assert shot2["tiles"] == [list(t) for t in delta.record.tiles]
    assert (shot2["tile"], shot2["columns"]) == (delta.record.tile, delta.record.columns)
    assert shot2["png"] == f"{stem(batch)}-000011.png"
    assert shot2["frame_error"] is None


def test_every_json_key_is_documented_in_the_help(capture: Capture, tmp_path: Path) -> None:
    sink = capture.sink
    keys = {
        k for doc in lines(batches(sink, "--json", "--frames", tmp_path / "f").stdout) for k in doc
    }
    keys |= {k for doc in lines(batches(sink, "--json").stdout) for k in doc}
    keys |= set(lines(batches(sink, "--json").stdout)[0]["counts"])
    help_text = batches("--help").stdout
    assert sorted(k for k in keys if k not in help_text) == []
    assert set(cli_batches.RECORD_KINDS.values()) <= set(help_text.split())


def test_frames_are_pngs_of_the_keyframe_and_of_the_delta_applied_on_it(
    capture: Capture, tmp_path: Path
) -> None:
    sink, batch = capture.sink, capture.batch
    out = tmp_path / "frames"
    result = batches(sink, "--frames", out)
    assert result.returncode == 0, result.stderr
    assert f"1 batch(es) in {sink}; 2 frame(s) written to {out}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        f"{stem(batch)}-000010.png",
        f"{stem(batch)}-000011.png",
    ]
    with Image.open(out / f"{stem(batch)}-000010.png") as key:
        assert (key.format, key.size) == ("PNG", (W, H))
        assert key.convert("RGB").getcolors() == [(W * H, RED)]
    with Image.open(out / f"{stem(batch)}-000011.png") as delta:
        assert (delta.format, delta.size) == ("PNG", (W, H))
        rgb = delta.convert("RGB")
        assert sorted(rgb.getcolors() or []) == sorted([(100, BLUE), (W * H - 100, RED)])
        assert rgb.getpixel((20, 16)) == BLUE
        assert rgb.getpixel((29, 25)) == BLUE
        assert rgb.getpixel((30, 26)) == RED
        assert rgb.getpixel((0, 0)) == RED


def test_a_delta_whose_keyframe_is_missing_is_reported_not_skipped(tmp_path: Path) -> None:
    _, delta = red_then_blue_square()
    batch = write(tmp_path / "sink", 1, (CONTEXT,), (delta,))
    result = batches(tmp_path / "sink", "--json", "--frames", tmp_path / "frames")
    assert result.returncode == 1
    header_file = tmp_path / "sink" / (stem(batch) + HEADER_SUFFIX)
    assert result.stderr.splitlines() == [
        f"overt agent batches: error: {header_file}: record 1: missing base: "
        f"keyframe {delta.record.base} is not earlier in the batch"
    ]
    shot = lines(result.stdout)[-1]
    assert shot["png"] is None
    assert shot["frame_error"].startswith("missing base: ")
    assert list((tmp_path / "frames").iterdir()) == []


def test_a_corrupt_batch_is_named_and_the_others_are_still_listed(tmp_path: Path) -> None:
    sink = tmp_path / "sink"
    good = write(sink, 1, (CONTEXT, *ACTIONS))
    truncated = write(sink, 2, (CONTEXT, *ACTIONS))
    garbage = write(sink, 3, (CONTEXT, *ACTIONS))
    not_json = write(sink, 4, (CONTEXT,))
    no_body = write(sink, 5, (CONTEXT,))
    body = sink / (stem(truncated) + BODY_SUFFIX)
    body.write_bytes(body.read_bytes()[:-5])
    body = sink / (stem(garbage) + BODY_SUFFIX)
    body.write_bytes(b"OVTB" + bytes([BODY_FORMAT]) + b"\xff" * (len(garbage.body) - 5))
    (sink / (stem(not_json) + HEADER_SUFFIX)).write_text("{not json")
    (sink / (stem(no_body) + BODY_SUFFIX)).unlink()

    result = batches(sink, "--json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 4
    assert errors[0].startswith(f"overt agent batches: error: {sink / stem(truncated)}.body.zst: ")
    assert f"is {len(truncated.body) - 5} bytes, its header says {len(truncated.body)}" in errors[0]
    assert errors[1].startswith(f"overt agent batches: error: {sink / stem(garbage)}.body.zst: ")
    assert errors[2].startswith(
        f"overt agent batches: error: {sink / stem(not_json)}.header.json: "
    )
    assert errors[3] == f"overt agent batches: error: {sink / stem(no_body)}.body.zst: no such file"
    heads = [d for d in lines(result.stdout) if d["kind"] == "batch"]
    assert heads[0]["batch"] == good.header.batch_id
    # What could be read is still given: the header of a batch whose body is bad.
    assert [(d["seq"], d["records"], d["error"] is None) for d in heads] == [
        (1, 10, True), (2, None, False), (3, None, False), (None, None, False),
        (5, None, False),
    ]  # fmt: skip
    assert [d["error"] for d in heads[1:]] == [e.removeprefix("overt agent batches: error: ")
                                               for e in errors]  # fmt: skip
    assert [d["file"] for d in heads[1:]] == [
        stem(b) + HEADER_SUFFIX for b in (truncated, garbage, not_json, no_body)
    ]
    assert len(lines(result.stdout)) == 5 + 10
    assert all(d["seq"] == 1 for d in lines(result.stdout) if d["kind"] != "batch")

    text = batches(sink, "--records")
    assert text.returncode == 1
    assert len(text.stderr.splitlines()) == 4
    assert text.stdout.startswith("#1 ")
    assert "text='weekly numbers <EMAIL>'" in text.stdout
    assert text.stdout.splitlines()[-1] == f"1 batch(es) in {sink}, 4 unreadable"


def test_a_header_renamed_to_another_batch_is_refused(tmp_path: Path) -> None:
    sink = tmp_path / "sink"
    batch = write(sink, 1, (CONTEXT,))
    for suffix in (HEADER_SUFFIX, BODY_SUFFIX):
        (sink / (stem(batch) + suffix)).rename(sink / f"000000000009-..{suffix}")
    result = batches(sink, "--json", "--frames", tmp_path / "frames")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"overt agent batches: error: {sink}/000000000009-..{HEADER_SUFFIX}: "
        "the name does not match the header's seq and id"
    ]


@pytest.mark.parametrize("make", ["missing", "a file"])
def test_a_directory_that_cannot_be_read_is_one_line_and_exit_1(tmp_path: Path, make: str) -> None:
    target = tmp_path / "sink"
    if make == "a file":
        target.write_text("")
    result = batches(target, "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"overt agent batches: error: {target}: ")


def test_main_returns_0_on_a_good_sink_and_prints_the_records(
    capture: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["batches", str(capture.sink), "--records"]) == 0
    out = capsys.readouterr().out
    assert "apps: editor" in out
    assert "ClickRecord(t=1800000000010, button='left', pressed=True, x=12, y=34)" in out


def test_frames_of_a_pipeline_session_are_the_windows_it_grabbed(tmp_path: Path) -> None:
    """The agent's Pipeline, fed a session whose window changes between grabs:
    every PNG is exactly the window as grabbed at that screenshot's time."""
    rec = Recorder(codec=PngCodec())
    d, w = decision(), EDITOR
    rec.screens[w.window_id] = screen(320, 200, 0)
    rec.feed([FocusChange(T, w)], w, d)
    for i, marks in enumerate(([(100, 70)], [(100, 70), (40, 150)], [(200, 100)])):
        rec.screens[w.window_id] = screen(320, 200, 0, marks)
        at = T + 2 + 2 * i
        rec.feed([MouseButton(at, 200, 120, "left", True)], w, d)
        rec.feed([MouseButton(at + 0.05, 200, 120, "left", False)], w, d)
    rec.flush(T + 10)
    for batch in rec.batches:
        DirectorySink(tmp_path / "sink").write(batch)

    result = batches(tmp_path / "sink", "--json", "--frames", tmp_path / "frames")
    assert result.returncode == 0, result.stderr
    shots = [d for d in lines(result.stdout) if d["kind"] == "screenshot"]
    assert {s["screenshot_kind"] for s in shots} == {"keyframe", "delta"}
    grabbed = {t: img for t, _, img in rec.grabbed}
    assert len(shots) == len(grabbed) == 4
    for shot in shots:
        with Image.open(tmp_path / "frames" / shot["png"]) as img:
            assert ImageChops.difference(img.convert("RGB"), grabbed[shot["t"]]).getbbox() is None
