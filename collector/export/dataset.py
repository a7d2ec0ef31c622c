"""The dataset writer: opened batches in, sessions, action rows and frames out.

This module owns the rules that turn a device's stream of opened batches
into sessions of actions, each with the screenshot that was on screen
before it, and the writing of them into the files of
:mod:`collector.export.layout`. It takes batches already verified and
checked (:mod:`collector.export.opening`) and reads no clock. What an action
is comes from :mod:`collector.export.actions`, the full frames from
:mod:`collector.export.reassembly`, the PNG files from
:mod:`collector.export.png`.

The screenshot of an action is the latest frame at or before it (in time
order) of the window the action happened in: frames are forgotten at a
marker, a missing batch and a change of app (an idle split keeps the frame
and writes it again into the new session's folder), and a frame is used
only while the window has the size it had when the frame was taken. Records
carry no window id, so two windows of the same app with the same size are
not told apart until the next frame.

Sessions end at every marker (gap, pause start and end, discard, consent,
policy change), at a missing or rejected batch (a sequence number skipped),
at a context of another app, after more than ``idle_split_ms`` without an
action, and at the end of a device's batches. A session holds at least one
action; its id is a six-digit counter over the whole export.

Each batch is applied as a unit: its rows, sessions and frames are written
as they come and undone if the whole batch does not go through (a frame
that will not reassemble rejects the batch): the three files are cut back
to where they ended before it and its PNG files deleted, so nothing of it
is left. PNG encoding, the dearest step, may run on worker threads
(``jobs`` > 0) while this thread reassembles the next frames.

The files are written in place, not each atomically: they live in the
export's hidden output directory, which :mod:`collector.export.run`
publishes in one rename once every file is fsynced (``close``).

Memory: nothing a batch produces is held until its end. Its frames are
decoded one at a time; a frame is kept while a later delta of the batch
names its keyframe, or while it is the device's latest frame, or while a
PNG thread writes it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from overt.wire.errors import FormatError, FrameError
from overt.wire.records import ContextRecord, MarkerRecord, ScreenshotRecord

from .actions import action_columns, in_time_order
from .errors import BatchRejected, OutputError
from .layout import ACTIONS, IMAGES, METADATA, SESSIONS, in_column_order, iso, json_line
from .opening import OpenedBatch
from .png import PngEncoder, PngJob
from .reassembly import DeltaChains

log = logging.getLogger(__name__)


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

    @classmethod
    def of(cls, rec: ScreenshotRecord, img: Image.Image, context: ContextRecord | None) -> _Frame:
        """The frame ``rec`` stands for, taken while ``context`` was in effect."""
        window = None if context is None else (context.width, context.height)
        return cls(img, rec.t, rec.width, rec.height, rec.source_width, rec.source_height, window)


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
    """What a dataset holds so far, and the dataset keys its batches were sealed to."""

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
            if isinstance(exc, (FormatError, Image.DecompressionBombError)):
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
        line = json_line(row)
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
                self._sessions.write(json_line(s.session.summary(reason)))
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
        chains = DeltaChains(batch.records, self._png.in_flight)
        for rec, release in in_time_order(batch.records):
            if isinstance(rec, ContextRecord):
                if s.context is not None and rec.app_id != s.context.app_id:
                    self._split(s, "app_change", tally)
                    s.frame = None
                s.context = rec
            elif isinstance(rec, MarkerRecord):
                self._split(s, rec.kind.value, tally)
                s.frame = None
            elif isinstance(rec, ScreenshotRecord):
                s.frame = _Frame.of(rec, chains.frame(rec, batch.images), s.context)
                tally.frames += 1
            else:
                fields = action_columns(rec, release)
                self._emit(s, header.batch_id, header.seq, fields, tally)

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
        self._write_row(in_column_order(row), tally)
        session.actions += 1
        session.with_screenshot += frame is not None
        session.end_ms = max(session.end_ms, end)
        session.last_seq = seq
        s.last_action_end = end if s.last_action_end is None else max(s.last_action_end, end)


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
