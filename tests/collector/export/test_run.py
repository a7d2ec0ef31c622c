"""``overt export``'s core, end to end with real sealed batches.

Batches are made by the real agent pipeline (or straight from records),
sealed with ``overt.wire.sealed.seal_batch`` under keys generated per test, and
exported with :func:`collector.export.run.export_batches` into a temporary directory.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from PIL import Image, ImageChops, ImageStat

from agent.events import FocusChange, KeyEvent, MouseButton, MouseMove, MouseScroll, SourceEvent
from collector.export.command import ProgressBar
from collector.export.errors import OutputError, StoreReadError
from collector.export.layout import COLUMNS
from collector.export.opening import UnopenedBatch
from collector.export.run import ExportConfig, ExportSummary, export_batches
from overt.wire.batch import Batch
from overt.wire.body import decode_body
from overt.wire.frames import image_id
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
from overt.wire.sealed import FORMAT, MAGIC, parse_sealed, seal_batch

from ._batches import (
    DEVICE,
    EDITOR,
    SHOTS,
    T_MS,
    Keys,
    LossyCodec,
    PngCodec,
    Recorder,
    T,
    decision,
    make_batch,
    png,
    screen,
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def export(
    tmp_path: Path, keys: Keys, items: list[UnopenedBatch], **options: Any
) -> tuple[ExportSummary, Path]:
    out = tmp_path / "dataset"
    config = ExportConfig(out=out, source="test", **options)
    summary = export_batches(items, keys.dataset, config, clock=lambda: T + 3600)
    return summary, out


def typed(text: str, t0: float, step: float = 0.1) -> list[SourceEvent]:
    out: list[SourceEvent] = []
    for i, ch in enumerate(text):
        key = "space" if ch == " " else ch
        out += [
            KeyEvent(t0 + i * step, key, True, ch),
            KeyEvent(t0 + i * step + 0.05, key, False, ch),
        ]
    return out


def work_session(recorder: Recorder) -> None:
    """Focus the editor, click, type, save, scroll and drag, changing the window
    content as the user would, with screenshots taken by the pipeline's triggers."""
    d = decision()
    w = EDITOR
    s = recorder.screens
    s[w.window_id] = screen(320, 200, 0)
    recorder.feed([FocusChange(T, w)], w, d)
    moves: list[SourceEvent] = [
        MouseMove(T + 1.0 + i / 100, 150 + 2 * i, 100 + i) for i in range(20)
    ]
    recorder.feed(moves, w, d)
    s[w.window_id] = screen(320, 200, 0, [(100, 70)])
    recorder.feed(
        [
            MouseButton(T + 1.3, 200, 120, "left", True),
            MouseButton(T + 1.35, 200, 120, "left", False),
        ],
        w,
        d,
    )
    s[w.window_id] = screen(320, 200, 0, [(100, 70), (40, 150)])
    recorder.feed(typed("hello world", T + 3), w, d)
    recorder.feed(
        [
            KeyEvent(T + 4.5, "ctrl", True),
            KeyEvent(T + 4.6, "s", True, "\x13"),
            KeyEvent(T + 4.65, "s", False, "\x13"),
            KeyEvent(T + 4.7, "ctrl", False),
        ],
        w,
        d,
    )
    recorder.tick(T + 5.5, d)
    s[w.window_id] = screen(320, 200, 0, [(100, 70), (40, 150), (200, 100)])
    recorder.feed([MouseScroll(T + 6, 200, 150, 0, -3)], w, d)
    recorder.tick(T + 7, d)
    drag: list[SourceEvent] = [MouseButton(T + 8, 150, 100, "left", True)]
    drag += [MouseMove(T + 8.1 + i / 10, 150 + 20 * i, 100 + 10 * i) for i in range(6)]
    drag.append(MouseButton(T + 8.8, 250, 150, "left", False))
    recorder.feed(drag, w, d)
    recorder.flush(T + 10)


# ------------------------------------------------------------------ actions


def test_actions_equal_what_the_pipeline_was_fed(tmp_path: Path) -> None:
    keys = Keys()
    rec = Recorder(codec=PngCodec())
    work_session(rec)
    summary, out = export(tmp_path, keys, [keys.stored(b) for b in rec.batches])
    assert summary.rejected == []
    assert summary.batches == len(rec.batches) >= 1
    rows = read_jsonl(out / "actions.jsonl")
    main = [r for r in rows if r["action"] in {"click", "text", "key", "scroll", "drag"}]
    columns = ("action", "t_ms", "end_ms", "button", "x", "y", "end_x", "end_y", "dx", "dy")
    got = [tuple(r[c] for c in (*columns, "keys", "text")) for r in main]
    ms = lambda s: T_MS + round(s * 1000)  # noqa: E731
    assert got == [
        ("click", ms(1.3), ms(1.35), "left", 100, 70, 100, 70, 0, 0, "", ""),
        ("text", ms(3), ms(4.0), "", None, None, None, None, 0, 0, "", "hello world"),
        ("key", ms(4.6), ms(4.6), "", None, None, None, None, 0, 0, "ctrl+s", ""),
        ("scroll", ms(6), ms(6), "", 100, 100, None, None, 0, -3, "", ""),
        ("click", ms(8), ms(8.8), "left", 50, 50, 150, 100, 0, 0, "", ""),
        ("drag", ms(8), ms(8.8), "", 50, 50, 150, 100, 0, 0, "", ""),
    ]
    approach = next(r for r in rows if r["action"] == "approach")
    assert approach["path"][0] == [0, 50, 50]
    assert approach["path"][-1][1:] == [100, 70]
    drag = next(r for r in rows if r["action"] == "drag")
    assert drag["path"][0] == [0, 50, 50]
    assert drag["path"][-1] == [800, 150, 100]
    for r in rows:
        assert (r["device_id"], r["app_id"], r["title"], r["title_state"]) == (
            DEVICE,
            "editor",
            "Report.odt",
            "kept",
        )
        assert (r["window_x"], r["window_y"], r["window_width"], r["window_height"]) == (
            100,
            50,
            320,
            200,
        )
        assert r["time"].endswith("Z")
        assert r["time"].startswith("2027-01-15T08:00:0")
        assert r["batch_id"] in {b.header.batch_id for b in rec.batches}
    assert [r["index"] for r in rows] == list(range(len(rows)))
    assert summary.actions == len(rows)
    assert summary.events == sum(len(decode_body(b.body)[0]) for b in rec.batches)


def test_every_action_sees_the_last_frame_grabbed_before_it_pixel_exact(tmp_path: Path) -> None:
    keys = Keys()
    rec = Recorder(codec=PngCodec())
    work_session(rec)
    kinds = [
        r.kind
        for b in rec.batches
        for r in decode_body(b.body)[0]
        if isinstance(r, ScreenshotRecord)
    ]
    assert ScreenshotKind.KEYFRAME in kinds
    assert ScreenshotKind.DELTA in kinds
    summary, out = export(tmp_path, keys, [keys.stored(b) for b in rec.batches])
    rows = read_jsonl(out / "metadata.jsonl")
    assert rows
    assert summary.actions_with_screenshot == len(rows)
    for row in rows:
        before = [g for g in rec.grabbed if g[0] <= row["t_ms"]]
        expected = before[-1][2]
        assert row["screenshot_ms"] <= row["t_ms"]
        with Image.open(out / row["file_name"]) as img:
            assert img.format == "PNG"
            assert ImageChops.difference(img.convert("RGB"), expected).getbbox() is None
    # the click at 1.3 s saw the screen before its own effect
    click = next(r for r in rows if r["action"] == "click")
    assert click["screenshot_ms"] == T_MS + 30


def test_lossy_frames_are_within_tolerance_and_coordinates_scale_to_the_image(
    tmp_path: Path,
) -> None:
    keys = Keys()
    rec = Recorder(codec=LossyCodec())
    d = decision(shots=SHOTS.model_copy(update={"max_width": 160, "quality": 90}))
    w = EDITOR
    rec.screens[w.window_id] = screen(320, 200, 3, [(60, 60)])
    rec.feed([FocusChange(T, w)], w, d)
    rec.feed(
        [MouseButton(T + 2, 260, 150, "left", True), MouseButton(T + 2.1, 260, 150, "left", False)],
        w,
        d,
    )
    rec.flush(T + 3)
    _, out = export(tmp_path, keys, [keys.stored(b) for b in rec.batches])
    click = next(r for r in read_jsonl(out / "metadata.jsonl") if r["action"] == "click")
    assert (click["x"], click["y"]) == (160, 100)
    assert (click["image_width"], click["image_height"], click["image_scale"]) == (160, 100, 0.5)
    assert (click["image_x"], click["image_y"]) == (80, 50)
    blobs = [blob for b in rec.batches for blob in decode_body(b.body)[1].values()]
    assert all(blob[12:16] == b"VP8 " for blob in blobs)  # lossy WebP, not VP8L
    expected = rec.grabbed[0][2].resize((160, 100), Image.Resampling.BOX)
    with Image.open(out / click["file_name"]) as img:
        diff = ImageChops.difference(img.convert("RGB"), expected)
    assert max(ImageStat.Stat(diff).mean) < 4.0


# ------------------------------------------------------------------ layout


def test_layout_is_an_imagefolder_with_consistent_columns(tmp_path: Path) -> None:
    keys = Keys()
    rec = Recorder(codec=PngCodec(), max_age_s=4.0)  # several batches
    work_session(rec)
    assert len(rec.batches) >= 2
    summary, out = export(tmp_path, keys, [keys.stored(b) for b in rec.batches])
    meta = read_jsonl(out / "metadata.jsonl")
    actions = read_jsonl(out / "actions.jsonl")
    assert meta == [r for r in actions if r["file_name"] is not None]
    named = {r["file_name"] for r in meta}
    on_disk = {p.relative_to(out).as_posix() for p in (out / "images").rglob("*") if p.is_file()}
    assert named == on_disk
    assert len(on_disk) == summary.images
    for name in named:
        assert name.startswith("images/")
        assert not Path(name).is_absolute()
        session = name.split("/")[1]
        assert all(r["session_id"] == session for r in meta if r["file_name"] == name)
    types: dict[str, set[str]] = {}
    for row in actions:
        assert tuple(row) == COLUMNS
        for k, v in row.items():
            if v is not None:
                types.setdefault(k, set()).add(type(v).__name__)
    assert all(len(t) == 1 for k, t in types.items() if k != "window_scale"), types
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["format"] == 1
    assert manifest["counts"]["actions"] == len(actions)
    assert manifest["counts"]["images"] == len(on_disk)
    assert manifest["counts"]["batches"] == len(rec.batches)
    assert manifest["dataset_key"]["key_ids"] == ["ds-2027"]
    assert manifest["created_at"] == "2027-01-15T09:00:00.000Z"
    sessions = read_jsonl(out / "sessions.jsonl")
    assert sum(s["actions"] for s in sessions) == len(actions)


def test_no_private_key_material_is_written(tmp_path: Path) -> None:
    keys = Keys()
    rec = Recorder(codec=PngCodec())
    work_session(rec)
    _, out = export(tmp_path, keys, [keys.stored(b) for b in rec.batches])
    raw = keys.dataset.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem = keys.dataset.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body = b"".join(pem.splitlines()[1:-1])
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert raw not in data
            assert body not in data
            assert raw.hex().encode() not in data


# ------------------------------------------------------------------ rejected batches


def _records(t0: int, label: int) -> tuple[list[Record], dict[str, bytes]]:
    blob = png(screen(64, 48, label))
    key = image_id(blob)
    return [
        ContextRecord(t0, "editor", "Doc", TitleState.KEPT, 0, 0, 64, 48, 1.0),
        ScreenshotRecord(t0 + 10, ScreenshotKind.KEYFRAME, key, 64, 48, 64, 48),
        ClickRecord(t0 + 500, "left", True, 10, 20),
        ClickRecord(t0 + 600, "left", False, 10, 20),
    ], {key: blob}


def three_batches() -> list[Batch]:
    out = []
    for seq in (1, 2, 3):
        records, images = _records(T_MS + seq * 1000, seq)
        out.append(make_batch(records, images, seq=seq))
    return out


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _reframe(
    sealed: bytes,
    header: bytes | None = None,
    signature: bytes | None = None,
    ciphertext: bytes | None = None,
) -> bytes:
    p = parse_sealed(sealed)
    return replace(
        p,
        header_bytes=header if header is not None else p.header_bytes,
        signature=signature if signature is not None else p.signature,
        ciphertext=ciphertext if ciphertext is not None else p.ciphertext,
    ).to_bytes()


def _resign(keys: Keys, header: bytes, ciphertext: bytes) -> bytes:
    from overt.wire.sealed import _signed_bytes  # the signature a device would make

    return keys.device(DEVICE).sign(_signed_bytes(header, ciphertext))


def _body_header(batch: Batch, **changes: Any) -> Batch:
    return Batch(replace(batch.header, **changes), batch.body)


Tamper = Callable[[Keys, list[Batch]], UnopenedBatch]


def _case_flipped_ciphertext(k: Keys, b: list[Batch]) -> UnopenedBatch:
    sealed = k.seal(b[1])
    return k.stored(b[1], _flip(sealed, len(sealed) - 20))


def _case_flipped_header(k: Keys, b: list[Batch]) -> UnopenedBatch:
    sealed = k.seal(b[1])
    return k.stored(b[1], _flip(sealed, len(MAGIC) + 4 + 3))


def _case_wrong_device_key(k: Keys, b: list[Batch]) -> UnopenedBatch:
    return replace(k.stored(b[1]), device_key=Ed25519PrivateKey.generate().public_key())


def _case_unknown_device(k: Keys, b: list[Batch]) -> UnopenedBatch:
    return replace(k.stored(b[1]), device_key=None)


def _case_wrong_dataset_key(k: Keys, b: list[Batch]) -> UnopenedBatch:
    h = b[1].header
    other = X25519PrivateKey.generate().public_key()
    sealed = seal_batch(h.to_json(), b[1].body, other, k.device(DEVICE))
    return k.stored(b[1], sealed)


def _case_header_swapped_and_resigned(k: Keys, b: list[Batch]) -> UnopenedBatch:
    # batch 2's ciphertext under a header that claims other times, signed by the device
    header = replace(b[1].header, start_ms=b[1].header.start_ms - 1).to_json()
    original = k.seal(b[1])
    ciphertext = parse_sealed(original).ciphertext
    sealed = _reframe(original, header, _resign(k, header, ciphertext))
    return k.stored(b[1], sealed)


def _case_header_swapped_unsigned(k: Keys, b: list[Batch]) -> UnopenedBatch:
    header = replace(b[1].header, end_ms=b[1].header.end_ms + 1).to_json()
    return k.stored(b[1], _reframe(k.seal(b[1]), header))


def _case_stored_under_another_seq(k: Keys, b: list[Batch]) -> UnopenedBatch:
    # the store's row for seq 2 holds the (valid) bytes of batch 3
    return replace(k.stored(b[2]), seq=2, batch_id=b[1].header.batch_id)


def _case_garbage(k: Keys, b: list[Batch]) -> UnopenedBatch:
    return replace(k.stored(b[1]), sealed=b"not a sealed batch at all")


def _case_truncated(k: Keys, b: list[Batch]) -> UnopenedBatch:
    sealed = k.seal(b[1])
    return k.stored(b[1], sealed[: len(MAGIC) + 4 + 10])


def _case_body_not_a_body(k: Keys, b: list[Batch]) -> UnopenedBatch:
    body = b"OVTB\x02" + b"\x00" * 40
    return k.stored(Batch(replace(b[1].header, body_size=len(body)), body))


def _case_counts_disagree(k: Keys, b: list[Batch]) -> UnopenedBatch:
    counts = replace(b[1].header.counts, clicks=5)
    return k.stored(_body_header(b[1], counts=counts))


def _case_app_ids_disagree(k: Keys, b: list[Batch]) -> UnopenedBatch:
    return k.stored(_body_header(b[1], app_ids=("browser",)))


def _case_corrupt_image(k: Keys, b: list[Batch]) -> UnopenedBatch:
    records, images = _records(T_MS + 2000, 2)
    ((key, blob),) = images.items()
    broken = make_batch(records, {key: blob[:20] + b"\x00" * (len(blob) - 20)}, seq=2)
    return k.stored(broken)


def _case_orphan_delta(k: Keys, b: list[Batch]) -> UnopenedBatch:
    records, images = _records(T_MS + 2000, 2)
    tile = png(Image.new("RGB", (32, 32)))
    delta = ScreenshotRecord(
        T_MS + 2100,
        ScreenshotKind.DELTA,
        image_id(tile),
        64,
        48,
        64,
        48,
        base="f" * 24,
        tile=32,
        columns=1,
        tiles=((0, 0),),
    )
    return k.stored(make_batch([*records, delta], {**images, image_id(tile): tile}, seq=2))


TAMPERED: dict[str, tuple[Tamper, str]] = {
    "flipped ciphertext bit": (_case_flipped_ciphertext, "bad signature"),
    "flipped header bit": (_case_flipped_header, "malformed"),
    "wrong device key": (_case_wrong_device_key, "bad signature"),
    "unknown device": (_case_unknown_device, "unknown device"),
    "wrong dataset key": (_case_wrong_dataset_key, "cannot decrypt"),
    "header swapped, re-signed by the device": (
        _case_header_swapped_and_resigned,
        "cannot decrypt",
    ),
    "header swapped, not re-signed": (_case_header_swapped_unsigned, "bad signature"),
    "stored under another seq": (_case_stored_under_another_seq, "header mismatch"),
    "not a sealed batch": (_case_garbage, "malformed"),
    "truncated": (_case_truncated, "malformed"),
    "body that does not decode": (_case_body_not_a_body, "invalid body"),
    "counts disagree with the header": (_case_counts_disagree, "inconsistent body"),
    "app ids disagree with the header": (_case_app_ids_disagree, "inconsistent body"),
    "keyframe that does not decode": (_case_corrupt_image, "invalid body"),
    "delta without its keyframe": (_case_orphan_delta, "inconsistent body"),
}


@pytest.mark.parametrize("case", list(TAMPERED), ids=list(TAMPERED))
def test_a_bad_batch_is_reported_with_its_reason_and_nothing_of_it_is_written(
    tmp_path: Path, case: str
) -> None:
    tamper, reason = TAMPERED[case]
    keys = Keys()
    batches = three_batches()
    bad = tamper(keys, batches)
    items = [keys.stored(batches[0]), bad, keys.stored(batches[2])]
    summary, out = export(tmp_path, keys, items)
    assert [(r.seq, r.reason) for r in summary.rejected] == [(2, reason)]
    assert summary.batches == 2
    rows = read_jsonl(out / "actions.jsonl")
    assert {r["seq"] for r in rows} == {1, 3}
    assert {r["batch_id"] for r in rows} == {batches[0].header.batch_id, batches[2].header.batch_id}
    assert len(list((out / "images").rglob("*.png"))) == 2
    sessions = read_jsonl(out / "sessions.jsonl")
    assert [(s["started_by"], s["ended_by"]) for s in sessions] == [
        ("start", "missing_batch"),
        ("missing_batch", "end"),
    ]
    manifest = json.loads((out / "dataset.json").read_text())
    assert [(r["seq"], r["reason"]) for r in manifest["rejected"]] == [(2, reason)]
    assert manifest["counts"]["rejected"] == 1


def test_a_duplicate_batch_is_reported_and_exported_once(tmp_path: Path) -> None:
    keys = Keys()
    b = three_batches()
    items = [keys.stored(b[0]), keys.stored(b[1]), keys.stored(b[1]), keys.stored(b[2])]
    summary, out = export(tmp_path, keys, items)
    assert [(r.seq, r.reason) for r in summary.rejected] == [(2, "duplicate")]
    assert [r["seq"] for r in read_jsonl(out / "actions.jsonl")] == [1, 2, 3]
    assert len(read_jsonl(out / "sessions.jsonl")) == 1


def test_when_nothing_can_be_exported_no_output_is_left(tmp_path: Path) -> None:
    keys = Keys()
    b = three_batches()
    items = [replace(keys.stored(x), device_key=None) for x in b]
    summary, _ = export(tmp_path, keys, items)
    assert summary.out is None
    assert summary.batches == 0
    assert len(summary.rejected) == 3
    assert list(tmp_path.iterdir()) == []


def test_an_output_directory_that_is_not_empty_is_refused_and_untouched(tmp_path: Path) -> None:
    keys = Keys()
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not an empty directory"):
        export(tmp_path, keys, [keys.stored(b) for b in three_batches()])
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_an_empty_output_directory_is_used(tmp_path: Path) -> None:
    keys = Keys()
    (tmp_path / "dataset").mkdir()
    summary, out = export(tmp_path, keys, [keys.stored(b) for b in three_batches()])
    assert summary.out == out
    assert (out / "dataset.json").exists()


def test_a_storage_error_midway_leaves_no_output(tmp_path: Path) -> None:
    keys = Keys()
    b = three_batches()

    def items() -> Iterator[UnopenedBatch]:
        yield keys.stored(b[0])
        raise StoreReadError("segment file unreadable")

    with pytest.raises(StoreReadError):
        export(tmp_path, keys, list_then(items()))
    assert list(tmp_path.iterdir()) == []


def list_then(it: Iterator[UnopenedBatch]) -> Iterator[UnopenedBatch]:
    yield from it


# ------------------------------------------------------------------ sessions


def ctx(t: int, app: str = "editor", w: int = 64, h: int = 48) -> ContextRecord:
    return ContextRecord(t, app, f"{app} window", TitleState.KEPT, 0, 0, w, h, 1.0)


def click(t: int, x: int = 5, y: int = 5) -> list[Record]:
    return [ClickRecord(t, "left", True, x, y), ClickRecord(t + 80, "left", False, x, y)]


def test_sessions_split_on_markers_app_changes_idle_and_missing_batches(tmp_path: Path) -> None:
    keys = Keys()
    t = T_MS
    minute = 60_000
    first: list[Record] = [
        ctx(t),
        *click(t + 100),
        *click(t + 2 * minute),  # 2 min idle: same session
        *click(t + 8 * minute),  # 6 min idle: new session
        MarkerRecord(t + 9 * minute, MarkerKind.PAUSE_START),
        MarkerRecord(t + 20 * minute, MarkerKind.PAUSE_END),
        ctx(t + 20 * minute + 1),
        *click(t + 20 * minute + 100),
        ctx(t + 21 * minute, app="browser"),
        *click(t + 21 * minute + 100),
        MarkerRecord(t + 22 * minute, MarkerKind.GAP, "queue_overflow", 3),
        *click(t + 22 * minute + 100),
        MarkerRecord(t + 23 * minute, MarkerKind.DISCARD),
    ]
    second: list[Record] = [ctx(t + 30 * minute, app="browser"), *click(t + 30 * minute + 100)]
    third: list[Record] = [ctx(t + 31 * minute, app="browser"), *click(t + 31 * minute + 100)]
    batches = [make_batch(first, seq=1), make_batch(second, seq=2), make_batch(third, seq=4)]
    summary, out = export(tmp_path, keys, [keys.stored(b) for b in batches])
    sessions = read_jsonl(out / "sessions.jsonl")
    assert [(s["app_id"], s["started_by"], s["ended_by"], s["actions"]) for s in sessions] == [
        ("editor", "start", "idle", 2),
        ("editor", "idle", "pause_start", 1),
        ("editor", "pause_end", "app_change", 1),
        ("browser", "app_change", "gap", 1),
        ("browser", "gap", "discard", 1),
        ("browser", "discard", "missing_batch", 1),
        ("browser", "missing_batch", "end", 1),
    ]
    assert summary.sessions == 7
    assert [s["session_id"] for s in sessions] == [f"{i:06d}" for i in range(1, 8)]
    rows = read_jsonl(out / "actions.jsonl")
    assert [r["session_id"] for r in rows] == [
        s["session_id"] for s in sessions for _ in range(s["actions"])
    ]
    assert [r["index"] for r in rows if r["session_id"] == "000001"] == [0, 1]
    assert sessions[0]["start_ms"] == t + 100
    assert sessions[0]["end_ms"] == t + 2 * minute + 80


def test_the_idle_threshold_is_an_option(tmp_path: Path) -> None:
    keys = Keys()
    t = T_MS
    records: list[Record] = [ctx(t), *click(t + 100), *click(t + 120_000)]
    items = [keys.stored(make_batch(records, seq=1))]
    summary, _ = export(tmp_path, keys, items, idle_split_s=60.0)
    assert summary.sessions == 2


def test_each_device_has_its_own_sessions(tmp_path: Path) -> None:
    keys = Keys()
    other = "aa" * 16
    b1 = make_batch([ctx(T_MS), *click(T_MS + 10)], seq=1)
    b2 = make_batch([ctx(T_MS), *click(T_MS + 10)], seq=1, device_id=other)
    _, out = export(tmp_path, keys, [keys.stored(b1), keys.stored(b2)])
    sessions = read_jsonl(out / "sessions.jsonl")
    assert [(s["device_id"], s["ended_by"]) for s in sessions] == [(DEVICE, "end"), (other, "end")]


def test_a_frame_is_used_only_while_its_window_keeps_its_size(tmp_path: Path) -> None:
    keys = Keys()
    t = T_MS
    blob = png(screen(64, 48, 1))
    records: list[Record] = [
        ctx(t),
        ScreenshotRecord(t + 10, ScreenshotKind.KEYFRAME, image_id(blob), 64, 48, 64, 48),
        *click(t + 100),
        ctx(t + 200, w=80, h=60),  # resized: the old frame no longer shows this window
        *click(t + 300),
    ]
    _, out = export(
        tmp_path, keys, [keys.stored(make_batch(records, {image_id(blob): blob}, seq=1))]
    )
    rows = read_jsonl(out / "actions.jsonl")
    assert [r["file_name"] is not None for r in rows] == [True, False]
    assert rows[1]["image_x"] is None
    assert rows[1]["window_width"] == 80


def test_frames_carry_over_an_idle_split_into_the_new_sessions_folder(tmp_path: Path) -> None:
    keys = Keys()
    t = T_MS
    blob = png(screen(64, 48, 1))
    records: list[Record] = [
        ctx(t),
        ScreenshotRecord(t + 10, ScreenshotKind.KEYFRAME, image_id(blob), 64, 48, 64, 48),
        *click(t + 100),
        *click(t + 600_000),
    ]
    _, out = export(
        tmp_path, keys, [keys.stored(make_batch(records, {image_id(blob): blob}, seq=1))]
    )
    rows = read_jsonl(out / "metadata.jsonl")
    assert [r["file_name"] for r in rows] == [
        "images/000001/000000.png",
        "images/000002/000000.png",
    ]


def test_key_timing_records_become_key_down_and_up(tmp_path: Path) -> None:
    keys = Keys()
    t = T_MS
    records: list[Record] = [
        ctx(t),
        KeyTimingRecord(t + 10, True),
        KeyTimingRecord(t + 60, False),
        ShortcutRecord(t + 100, "<letter>"),
        TextSpanRecord(t + 200, t + 900, "a [EMAIL] b", 1),
        ScrollRecord(t + 1000, 3, 4, 0, 2),
        MousePathRecord(t + 1100, PathKind.HOVER, 7, 8, (), (), (), 450),
        ClickRecord(t + 1600, "right", False, 1, 1),  # its press was in an earlier batch
    ]
    _, out = export(tmp_path, keys, [keys.stored(make_batch(records, seq=1))])
    rows = read_jsonl(out / "actions.jsonl")
    assert [(r["action"], r["keys"], r["text"], r["redactions"]) for r in rows] == [
        ("key_down", "", "", 0),
        ("key_up", "", "", 0),
        ("key", "<letter>", "", 0),
        ("text", "", "a [EMAIL] b", 1),
        ("scroll", "", "", 0),
        ("hover", "", "", 0),
        ("release", "", "", 0),
    ]
    assert rows[5]["dwell_ms"] == 450
    assert rows[5]["end_ms"] == t + 1550
    assert rows[6]["button"] == "right"


# ------------------------------------------------------------------ progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_bar_redraws_at_most_every_interval_and_ends_with_a_newline() -> None:
    stream = io.StringIO()
    clock = FakeClock()
    bar = ProgressBar(stream, 4, clock=clock, interval=0.5)
    bar.update(1, 1_000_000)
    clock.now += 0.1
    bar.update(2, 2_000_000)  # too soon: not drawn
    clock.now += 0.9
    bar.update(3, 3_000_000)
    clock.now += 1.0
    bar.update(4, 4_000_000)
    bar.close()
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) == 4  # 1, 3, 4 and the final redraw
    assert frames[0].startswith("[" + "#" * 7 + "-" * 23 + "] 1/4 batches  1.0 MB")
    assert frames[1].startswith("[" + "#" * 22 + "-" * 8 + "] 3/4 batches  3.0 MB  3.0 MB/s")
    assert frames[-1] == "[" + "#" * 30 + "] 4/4 batches  4.0 MB  2.0 MB/s\n"


def test_progress_bar_without_a_total_counts_batches() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, None, clock=FakeClock())
    bar.update(7, 500_000)
    bar.close()
    assert stream.getvalue().endswith("\r7 batches  0.5 MB  - MB/s\n")


def test_export_reports_progress_after_every_batch_and_closes_it(tmp_path: Path) -> None:
    keys = Keys()
    b = three_batches()
    items = [keys.stored(x) for x in b]
    calls: list[object] = []

    class Recording:
        def update(self, batches: int, sealed_bytes: int) -> None:
            calls.append((batches, sealed_bytes))

        def close(self) -> None:
            calls.append("closed")

    config = ExportConfig(out=tmp_path / "out")
    export_batches(items, keys.dataset, config, progress=Recording())
    sizes = [len(i.sealed) for i in items]
    assert calls == [(1, sizes[0]), (2, sizes[0] + sizes[1]), (3, sum(sizes)), "closed"]


def test_summary_lists_counts_and_each_rejected_batch(tmp_path: Path) -> None:
    keys = Keys()
    b = three_batches()
    items = [keys.stored(b[0]), replace(keys.stored(b[1]), device_key=None), keys.stored(b[2])]
    summary, out = export(tmp_path, keys, items)
    text = "\n".join(summary.lines())
    assert "exported 2 batches" in text
    assert str(out) in text
    assert "actions 2 (2 with a screenshot), sessions 2" in text
    assert "images written 2" in text
    assert f"device {DEVICE} seq 2 batch {b[1].header.batch_id}: unknown device" in text
    assert FORMAT == 1


def test_png_threads_write_the_same_dataset_as_inline_encoding(tmp_path: Path) -> None:
    keys = Keys()
    rec = Recorder(codec=PngCodec(), max_age_s=4.0)
    work_session(rec)
    items = [keys.stored(b) for b in rec.batches]
    bad = replace(items[1], device_key=None)  # a rejection between held outputs
    items = [items[0], bad, *items[2:]]
    outs = {}
    for jobs in (0, 2):
        out = tmp_path / f"jobs-{jobs}"
        summary = export_batches(items, keys.dataset, ExportConfig(out=out, jobs=jobs))
        assert summary.images > 0
        outs[jobs] = {
            p.relative_to(out).as_posix(): p.read_bytes()
            for p in out.rglob("*")
            if p.is_file() and p.name != "dataset.json"
        }
    assert outs[0] == outs[2]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"idle_split_s": 0.0}, "idle_split_s"),
        ({"png_compress_level": 10}, "png_compress_level"),
        ({"jobs": -1}, "jobs"),
    ],
)
def test_impossible_options_are_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ExportConfig(out=tmp_path / "o", **changes)
