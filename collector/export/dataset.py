"""The dataset writer: opened batches in, sessions, actions and frames out.

This module owns the dataset layout (format 1) and the rules that turn a
device's record stream into sessions of actions, each with the screenshot
that was on screen before it. It takes batches already verified and
validated (``collector.export.opening``) and reads no clock.

Layout, under the (temporary) output directory::

    metadata.jsonl     one row per action that has a screenshot; its
                       ``file_name`` names the PNG (the Hugging Face
                       "imagefolder" convention: load it with
                       ``load_dataset("imagefolder", data_dir=OUT)``)
    actions.jsonl      one row per action, the same columns; ``file_name``
                       is null for an action with no screenshot before it
    sessions.jsonl     one row per session: device, app, time range, what
                       started and ended it, counts
    images/<session>/<n>.png
                       reassembled full window frames (lossless PNG of the
                       decoded keyframe with its deltas applied), only those
                       referenced by an action; ``n`` counts from 000000
                       within the session

Columns of an action row (every key is present in every row, and a string
column is never null, so a column's type never changes between rows):
``file_name``, ``session_id``, ``index`` (within the session), ``device_id``,
``batch_id``, ``seq``, ``t_ms`` and ``time`` (ISO 8601, UTC), ``end_ms``,
``app_id``, ``title`` ("" when dropped), ``title_state``, ``window_x``,
``window_y``, ``window_width``, ``window_height``, ``window_scale``,
``action``, ``button``, ``x``, ``y``, ``end_x``, ``end_y``, ``dx``, ``dy``,
``path`` (``[[ms since t_ms, x, y], ...]``), ``dwell_ms``, ``keys``, ``text``,
``redactions``, ``screenshot_ms``, ``image_width``, ``image_height``,
``image_scale`` (image pixels per window pixel), ``image_x``, ``image_y``.
Coordinates are window-relative window pixels; ``image_x``/``image_y`` are
the same point in the screenshot's pixels.

Actions, from the records of ``overt.wire.records``: a button press is a
``click`` (with its release's time and place as ``end_*`` when the release
is in the same batch; a release without its press is a ``release``); a
scroll is ``scroll``; a pointer path is ``drag``, ``approach`` or ``hover``;
a text span is ``text`` (already redacted on the device); a shortcut record
is ``key``; key timing records are ``key_down`` and ``key_up``. Records are
taken in time order within a batch (ties in body order).

The screenshot of an action is the latest frame at or before it (in that
order) of the window the action happened in: frames are forgotten at a
marker, a missing batch and a change of app (an idle split keeps the frame
and writes it again into the new session's folder), and a frame is used
only while the window has the size it had when the frame was taken. Records
carry no window id, so two windows of the same app with the same size are
not told apart until the next frame; and since a delta names its chain by
the keyframe's content hash, two windows whose keyframes are pixel-identical
within one batch share one chain here.

Sessions end at every marker (gap, pause start and end, discard, consent,
policy change), at a missing or rejected batch (a sequence number skipped),
at a context of another app, after more than ``idle_split_ms`` without an
action, and at the end of a device's batches. A session holds at least one
action; its id is a six-digit counter over the whole export.

Each batch is applied as a unit: its rows, sessions and frames are written
as they come and undone if the whole batch does not go through (a frame
that will not reassemble rejects the batch): the three files are cut back
to where they ended before it and its PNG files deleted, so nothing of it
is left. PNG encoding (``collector.export.png``), the dearest step, may run on
worker threads (``jobs`` > 0) while this thread reassembles the next
frames.

Memory: nothing a batch produces is held until its end. Its frames are
decoded one at a time (each image's header checked against its record
first, ``agent.pipeline.screens.open_image``); a frame is kept while a
later delta of the batch names its keyframe (at most ``MAX_LIVE_CHAINS``,
checked by ``collector.export.opening``), or while it is the device's latest
frame, or while a PNG thread writes it. A delta is applied to its chain's
frame in place, or to a copy while that frame is being written.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from PIL import Image

from overt.wire.errors import FormatError as PipelineError
from overt.wire.errors import FrameError
from overt.wire.frames import apply_delta, open_image
from overt.wire.records import (
    ClickRecord,
    ContextRecord,
    KeyTimingRecord,
    MarkerRecord,
    MousePathRecord,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
    ScrollRecord,
    ShortcutRecord,
    TextSpanRecord,
)

from .errors import BatchRejected, OutputError
from .opening import OpenedBatch
from .png import PngEncoder, PngJob

log = logging.getLogger(__name__)

DATASET_FORMAT = 1
METADATA = "metadata.jsonl"
ACTIONS = "actions.jsonl"
SESSIONS = "sessions.jsonl"
IMAGES = "images"


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC, to the millisecond."""
    text = datetime.fromtimestamp(ms / 1000.0, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class _Frame:
    """The frame last seen of the current window, and where it was written."""

    image: Image.Image
    t: int
    width: int
    height: int
    source_width: int
    source_height: int
    #: The window's size (from the context in effect) when the frame was taken.
    window_size: tuple[int, int] | None
    session_id: str | None = None
    file_name: str | None = None


@dataclass(slots=True)
class _Session:
    session_id: str
    device_id: str
    app_id: str
    started_by: str
    start_ms: int
    end_ms: int
    first_seq: int
    last_seq: int
    actions: int = 0
    with_screenshot: int = 0
    images: int = 0

    def summary(self, ended_by: str) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "device_id": self.device_id,
            "app_id": self.app_id,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "start": iso(self.start_ms),
            "end": iso(self.end_ms),
            "started_by": self.started_by,
            "ended_by": ended_by,
            "actions": self.actions,
            "actions_with_screenshot": self.with_screenshot,
            "images": self.images,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
        }


@dataclass(slots=True)
class _DeviceState:
    """Where one device's stream stands between batches (copied per batch)."""

    device_id: str
    next_session: int
    last_seq: int | None = None
    context: ContextRecord | None = None
    frame: _Frame | None = None
    session: _Session | None = None
    pending_start: str = "start"
    last_action_end: int | None = None

    def clone(self) -> _DeviceState:
        session = None if self.session is None else replace(self.session)
        return replace(self, session=session)


@dataclass(slots=True)
class _Tally:
    """What is being written for one batch: counted when it goes through,
    undone (back to ``offsets`` of the three files) when it does not."""

    offsets: tuple[int, int, int]
    jobs: list[PngJob] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)
    actions: int = 0
    with_screenshot: int = 0
    sessions: int = 0
    frames: int = 0


@dataclass(slots=True)
class DatasetCounts:
    batches: int = 0
    sealed_bytes: int = 0
    events: int = 0
    actions: int = 0
    actions_with_screenshot: int = 0
    frames: int = 0
    images: int = 0
    sessions: int = 0
    dataset_key_ids: set[str] = field(default_factory=set)


class DatasetWriter:
    """Writes sessions, actions and frames of opened batches into ``root``.

    Batches must come in (device, seq) order for sessions to be whole; out of
    order, a device's stream is split where the order breaks. ``add`` applies
    a batch as a unit (raises :class:`BatchRejected`, and leaves nothing of
    it written, when a frame does not reassemble; any other error leaves
    nothing of it written either); ``skip`` notes a batch that was rejected
    before, so that the session around it is split; ``close`` ends the last
    session, waits for the PNG files and closes the files.
    """

    def __init__(self, root: Path, *, idle_split_ms: int, png: PngEncoder) -> None:
        self.root = root
        self.idle_split_ms = idle_split_ms
        self.counts = DatasetCounts()
        self._png = png
        self._state: _DeviceState | None = None
        self._next_session = 1
        try:
            (root / IMAGES).mkdir(parents=True, exist_ok=True)
            self._metadata = open(root / METADATA, "wb")  # noqa: SIM115
            self._actions = open(root / ACTIONS, "wb")  # noqa: SIM115
            self._sessions = open(root / SESSIONS, "wb")  # noqa: SIM115
        except OSError as exc:
            raise OutputError(f"cannot write the dataset in {root}: {exc.strerror or exc}") from exc

    # ------------------------------------------------------------ public

    def add(self, batch: OpenedBatch) -> None:
        """Apply one opened batch; raises :class:`BatchRejected` (nothing written)."""
        header = batch.header
        self._switch_device(header.device_id)
        assert self._state is not None
        state = self._state.clone()
        tally = self._begin()
        try:
            self._apply(state, batch, tally)
        except Exception as exc:
            self._undo(tally)
            if isinstance(exc, FrameError):
                raise BatchRejected("inconsistent body", f"batch {header.batch_id}: {exc}") from exc
            if isinstance(exc, (PipelineError, Image.DecompressionBombError)):
                raise BatchRejected(
                    "invalid body", f"batch {header.batch_id}: a screenshot does not reassemble"
                ) from exc
            raise
        self._count(tally)
        self._state = state
        self._next_session = state.next_session
        log.debug(
            "batch %s seq %d: %d actions, %d frames, %d images",
            header.batch_id,
            header.seq,
            tally.actions,
            tally.frames,
            len(tally.jobs),
        )
        c = self.counts
        c.batches += 1
        c.sealed_bytes += batch.sealed_size
        c.events += len(batch.records)
        c.dataset_key_ids.add(header.dataset_key_id)

    def skip(self, device_id: str) -> None:
        """A batch of ``device_id`` was rejected: the next one starts a new session."""
        if self._state is not None and self._state.device_id == device_id:
            tally = self._begin()
            self._split(self._state, "missing_batch", tally)
            self._state.frame = None
            self._count(tally)

    def close(self) -> None:
        """End the last session, wait for the PNG files, flush and fsync the files."""
        self._switch_device(None)
        try:
            self._png.wait()
            for stream in (self._metadata, self._actions, self._sessions):
                stream.flush()
                os.fsync(stream.fileno())
                stream.close()
        except OSError as exc:
            raise OutputError(f"cannot write the dataset in {self.root}: {exc}") from exc

    def abort(self) -> None:
        """Close the files without finishing (the caller removes the directory)."""
        for stream in (self._metadata, self._actions, self._sessions):
            stream.close()

    # ------------------------------------------------------------ internals

    def _switch_device(self, device_id: str | None) -> None:
        state = self._state
        if state is not None and state.device_id == device_id:
            return
        if state is not None:
            tally = self._begin()
            self._split(state, "end", tally)
            self._count(tally)
        self._state = (
            None if device_id is None else _DeviceState(device_id, next_session=self._next_session)
        )

    def _begin(self) -> _Tally:
        try:
            return _Tally((self._metadata.tell(), self._actions.tell(), self._sessions.tell()))
        except OSError as exc:
            raise OutputError(f"cannot write the dataset in {self.root}: {exc}") from exc

    def _undo(self, tally: _Tally) -> None:
        """Remove what ``tally`` wrote: its PNG files and folders, and its lines."""
        try:
            for job in tally.jobs:
                job.cancel()
                job.path.unlink(missing_ok=True)
            for directory in reversed(tally.dirs):
                directory.rmdir()
            streams = (self._metadata, self._actions, self._sessions)
            for stream, offset in zip(streams, tally.offsets, strict=True):
                stream.truncate(offset)
                stream.seek(offset)
        except OSError as exc:
            raise OutputError(f"cannot undo a rejected batch in {self.root}: {exc}") from exc

    def _count(self, tally: _Tally) -> None:
        c = self.counts
        c.images += len(tally.jobs)
        c.actions += tally.actions
        c.actions_with_screenshot += tally.with_screenshot
        c.sessions += tally.sessions
        c.frames += tally.frames

    def _write_row(self, row: dict[str, Any], tally: _Tally) -> None:
        line = _line(row)
        try:
            self._actions.write(line)
            if row["file_name"] is not None:
                self._metadata.write(line)
        except OSError as exc:
            raise OutputError(f"cannot write the dataset in {self.root}: {exc}") from exc
        tally.actions += 1
        tally.with_screenshot += row["file_name"] is not None

    def _write_image(self, name: str, img: Image.Image, tally: _Tally) -> None:
        path = self.root / name
        try:
            if not path.parent.is_dir():
                path.parent.mkdir()
                tally.dirs.append(path.parent)
            tally.jobs.append(self._png.write(img, path))
        except OSError as exc:
            raise OutputError(f"cannot write the dataset in {self.root}: {exc}") from exc

    def _split(self, s: _DeviceState, reason: str, tally: _Tally) -> None:
        """End the open session (if any); the next one starts because of ``reason``."""
        if s.session is not None:
            try:
                self._sessions.write(_line(s.session.summary(reason)))
            except OSError as exc:
                raise OutputError(f"cannot write the dataset in {self.root}: {exc}") from exc
            tally.sessions += 1
            s.session = None
        s.pending_start = reason
        s.last_action_end = None

    def _apply(self, s: _DeviceState, batch: OpenedBatch, tally: _Tally) -> None:
        header = batch.header
        if s.last_seq is not None and header.seq != s.last_seq + 1:
            self._split(s, "missing_batch", tally)
            s.frame = None
        s.last_seq = header.seq
        records = batch.records
        order = sorted(range(len(records)), key=_sort_keys(records).__getitem__)
        releases = _pair_clicks(records, order)
        consumed = {j for j in releases.values() if j is not None}
        chains = _Chains(records)
        for i in order:
            rec = records[i]
            if isinstance(rec, ContextRecord):
                if s.context is not None and rec.app_id != s.context.app_id:
                    self._split(s, "app_change", tally)
                    s.frame = None
                s.context = rec
            elif isinstance(rec, MarkerRecord):
                self._split(s, rec.kind.value, tally)
                s.frame = None
            elif isinstance(rec, ScreenshotRecord):
                s.frame = self._frame(rec, batch.images, chains, s.context)
                tally.frames += 1
            elif i not in consumed:
                j = releases.get(i)
                release = None if j is None else records[j]
                assert release is None or isinstance(release, ClickRecord)
                fields = _action(rec, release)
                self._emit(s, header.batch_id, header.seq, fields, tally)

    def _frame(
        self,
        rec: ScreenshotRecord,
        images: dict[str, bytes],
        chains: _Chains,
        context: ContextRecord | None,
    ) -> _Frame:
        if rec.kind is ScreenshotKind.KEYFRAME:
            img = open_image(images[rec.image], (rec.width, rec.height))
            chains.keyframe(rec.image, img)
        else:
            assert rec.base is not None  # checked when the batch was opened
            img = chains.base(rec.base)
            if self._png.in_flight(img):
                img = img.copy()
            apply_delta(img, rec, images[rec.image])
            chains.applied(rec.base, img)
        window = None if context is None else (context.width, context.height)
        return _Frame(
            img, rec.t, rec.width, rec.height, rec.source_width, rec.source_height, window
        )

    def _emit(
        self, s: _DeviceState, batch_id: str, seq: int, fields: dict[str, Any], tally: _Tally
    ) -> None:
        t, end = fields["t_ms"], fields["end_ms"]
        if (
            s.session is not None
            and s.last_action_end is not None
            and t - s.last_action_end > self.idle_split_ms
        ):
            self._split(s, "idle", tally)
        ctx = s.context
        session = s.session
        if session is None:
            session = s.session = _Session(
                session_id=f"{s.next_session:06d}",
                device_id=s.device_id,
                app_id=ctx.app_id if ctx is not None else "",
                started_by=s.pending_start,
                start_ms=t,
                end_ms=end,
                first_seq=seq,
                last_seq=seq,
            )
            s.next_session += 1
        frame = s.frame
        if frame is not None and (ctx is None or frame.window_size != (ctx.width, ctx.height)):
            frame = None
        if frame is not None and frame.session_id != session.session_id:
            name = f"{IMAGES}/{session.session_id}/{session.images:06d}.png"
            self._write_image(name, frame.image, tally)
            session.images += 1
            frame = s.frame = replace(frame, session_id=session.session_id, file_name=name)
        row: dict[str, Any] = {
            "file_name": None if frame is None else frame.file_name,
            "session_id": session.session_id,
            "index": session.actions,
            "device_id": s.device_id,
            "batch_id": batch_id,
            "seq": seq,
            "t_ms": t,
            "time": iso(t),
            "end_ms": end,
            "app_id": "" if ctx is None else ctx.app_id,
            "title": "" if ctx is None or ctx.title is None else ctx.title,
            "title_state": "" if ctx is None else ctx.title_state.value,
            "window_x": None if ctx is None else ctx.x,
            "window_y": None if ctx is None else ctx.y,
            "window_width": None if ctx is None else ctx.width,
            "window_height": None if ctx is None else ctx.height,
            "window_scale": None if ctx is None else ctx.scale,
        }
        row.update(fields)
        row.update(_image_fields(frame, fields["x"], fields["y"]))
        self._write_row(_ordered(row), tally)
        session.actions += 1
        session.with_screenshot += frame is not None
        session.end_ms = max(session.end_ms, end)
        session.last_seq = seq
        s.last_action_end = end if s.last_action_end is None else max(s.last_action_end, end)


class _Chains:
    """The frames of a batch's delta chains, by keyframe id, each held only
    while a later delta of the batch names it (screenshots come in body
    order, so the deltas left to come are counted from the records)."""

    def __init__(self, records: list[Record]) -> None:
        self._frames: dict[str, Image.Image] = {}
        self._left = Counter(
            r.base
            for r in records
            if isinstance(r, ScreenshotRecord) and r.kind is ScreenshotKind.DELTA
        )

    def keyframe(self, key: str, img: Image.Image) -> None:
        if self._left[key]:
            self._frames[key] = img
        else:
            self._frames.pop(key, None)

    def base(self, key: str) -> Image.Image:
        try:
            return self._frames[key]
        except KeyError:  # the open step checked every base; a guard, not a path
            raise BatchRejected("inconsistent body", "a delta's keyframe is not held") from None

    def applied(self, key: str, img: Image.Image) -> None:
        self._left[key] -= 1
        if self._left[key]:
            self._frames[key] = img
        else:
            del self._frames[key]


COLUMNS = (
    "file_name",
    "session_id",
    "index",
    "device_id",
    "batch_id",
    "seq",
    "t_ms",
    "time",
    "end_ms",
    "app_id",
    "title",
    "title_state",
    "window_x",
    "window_y",
    "window_width",
    "window_height",
    "window_scale",
    "action",
    "button",
    "x",
    "y",
    "end_x",
    "end_y",
    "dx",
    "dy",
    "path",
    "dwell_ms",
    "keys",
    "text",
    "redactions",
    "screenshot_ms",
    "image_width",
    "image_height",
    "image_scale",
    "image_x",
    "image_y",
)


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in COLUMNS}


def _line(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _sort_keys(records: list[Record]) -> list[tuple[int, int]]:
    """Time order, ties in body order. Screenshot times are made non-decreasing
    in body order, so a chain's deltas are applied in the order they were
    encoded even if the device's clock stepped back."""
    keys = []
    last_shot = -(2**63)
    for i, r in enumerate(records):
        t = r.t
        if isinstance(r, ScreenshotRecord):
            t = last_shot = max(t, last_shot)
        keys.append((t, i))
    return keys


def _pair_clicks(records: list[Record], order: list[int]) -> dict[int, int | None]:
    """Each press's index -> the index of its release (None when not in the batch)."""
    pairs: dict[int, int | None] = {}
    open_press: dict[str, int] = {}
    for i in order:
        r = records[i]
        if not isinstance(r, ClickRecord):
            continue
        if r.pressed:
            open_press[r.button] = i
            pairs[i] = None
        elif r.button in open_press:
            pairs[open_press.pop(r.button)] = i
    return pairs


def _blank(t: int, action: str) -> dict[str, Any]:
    return {
        "t_ms": t,
        "end_ms": t,
        "action": action,
        "button": "",
        "x": None,
        "y": None,
        "end_x": None,
        "end_y": None,
        "dx": 0,
        "dy": 0,
        "path": [],
        "dwell_ms": 0,
        "keys": "",
        "text": "",
        "redactions": 0,
    }


def _action(rec: Record, release: ClickRecord | None) -> dict[str, Any]:
    """The action columns of one record (not context, marker or screenshot)."""
    if isinstance(rec, ClickRecord):
        a = _blank(rec.t, "click" if rec.pressed else "release")
        a.update(button=rec.button, x=rec.x, y=rec.y)
        if release is not None:
            a.update(end_ms=release.t, end_x=release.x, end_y=release.y)
        return a
    if isinstance(rec, ScrollRecord):
        a = _blank(rec.t, "scroll")
        a.update(x=rec.x, y=rec.y, dx=rec.dx, dy=rec.dy)
        return a
    if isinstance(rec, MousePathRecord):
        points = rec.points()
        a = _blank(rec.t, rec.kind.value)
        last = points[-1]
        a.update(
            x=rec.x,
            y=rec.y,
            end_x=last[1],
            end_y=last[2],
            end_ms=last[0] + rec.dwell_ms,
            path=[[t - rec.t, x, y] for t, x, y in points],
            dwell_ms=rec.dwell_ms,
        )
        return a
    if isinstance(rec, TextSpanRecord):
        a = _blank(rec.t, "text")
        a.update(end_ms=max(rec.t, rec.end), text=rec.text, redactions=rec.redactions)
        return a
    if isinstance(rec, ShortcutRecord):
        a = _blank(rec.t, "key")
        a.update(keys=rec.key)
        return a
    if isinstance(rec, KeyTimingRecord):
        return _blank(rec.t, "key_down" if rec.pressed else "key_up")
    raise BatchRejected("invalid body", f"unknown record type {type(rec).__name__}")


def _image_fields(frame: _Frame | None, x: int | None, y: int | None) -> dict[str, Any]:
    if frame is None:
        return {
            "screenshot_ms": None,
            "image_width": None,
            "image_height": None,
            "image_scale": None,
            "image_x": None,
            "image_y": None,
        }
    scale = frame.width / frame.source_width
    return {
        "screenshot_ms": frame.t,
        "image_width": frame.width,
        "image_height": frame.height,
        "image_scale": scale,
        "image_x": None if x is None else math.floor(x * scale),
        "image_y": None if y is None else math.floor(y * frame.height / frame.source_height),
    }


def iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a JSON-lines file of the dataset (for readers and tests)."""
    stream: IO[str]
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            yield json.loads(line)
