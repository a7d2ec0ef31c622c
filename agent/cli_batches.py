"""``overt agent batches``: list and show the batches of a development sink directory.

This module owns that command's reading of a sink directory
(``agent.sinks.directory``: a header file and a body file per batch, named
by sequence number and batch id) and its three outputs: a line per batch
(``--records`` adds every record), one JSON object per batch and per record
(``--json``, an interface for scripts and checks, written down in
:data:`BATCHES_EPILOG`, the command's ``--help``), and every screenshot
reassembled as a PNG (``--frames``, as ``overt export`` reassembles them).
It parses the wire formats with ``overt.wire`` and trusts nothing in the
directory: a batch that cannot be read is named and the others still listed.
``agent.cli`` parses the arguments and calls :func:`run_batches`.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from overt.wire.batch import BatchHeader
from overt.wire.body import decode_body
from overt.wire.errors import FormatError
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

if TYPE_CHECKING:
    from PIL import Image


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


#: The ``kind`` of each record in ``overt agent batches --json`` (a stable name).
RECORD_KINDS: dict[type[Record], str] = {
    ContextRecord: "context",
    ClickRecord: "click",
    ScrollRecord: "scroll",
    MousePathRecord: "path",
    TextSpanRecord: "text",
    ShortcutRecord: "shortcut",
    KeyTimingRecord: "key_timing",
    ScreenshotRecord: "screenshot",
    MarkerRecord: "marker",
}

#: The largest screenshot reassembled (width x height), far above any window
#: the agent grabs: a bound on what a corrupt record can make this allocate.
_MAX_FRAME_PIXELS = 64 * 1024 * 1024

BATCHES_EPILOG = """\
--json prints one JSON object per line (ASCII; no bytes: images are named by
their key). For each batch, in sequence order, an object of kind "batch":

  kind "batch", file (the header file's name), batch (its id), seq,
  device_id, start_ms, end_ms, policy_version, dataset_key_id, app_ids,
  counts {clicks, scrolls, paths, path_samples, text_spans, redactions,
  shortcuts, key_timings, contexts, screenshots, markers}, format, body_size,
  body_format, records, images, image_bytes, and error: null, or why the
  batch could not be read (then the fields it would have given are null)

then one object per record, in body order, each with kind, batch, seq, index
(its place in the batch) and t (epoch ms), and by kind:

  context     app_id, title (null when dropped), title_state, x, y, width,
              height (the window on screen), scale
  click       button, pressed, x, y
  scroll      x, y, dx, dy
  path        path_kind (drag, approach, hover), x, y, dt, dx, dy, dwell_ms,
              points [[t, x, y], ...] (the samples, absolute)
  text        end, text (as redacted), redactions
  shortcut    key
  key_timing  pressed
  screenshot  screenshot_kind (keyframe, delta), image (its key), width,
              height, source_width, source_height, base (a delta's keyframe
              key, else null), tile, columns, tiles [[column, row], ...],
              image_bytes (null when the batch lacks the image); with
              --frames also png (the file's name in OUT, or null) and
              frame_error (null, or why it could not be reassembled:
              "missing base: ..." when its keyframe is not in the batch)
  marker      marker_kind (consent, policy_change, pause_start, pause_end,
              gap, discard), detail, count

Coordinates are window-relative pixels, as stored, except a context's. With
--frames, the screenshot at record index I of a batch is written as
OUT/<seq, 12 digits>-<batch id>-<I, 6 digits>.png: a keyframe as decoded, a
delta applied to the frame of its chain so far (as `overt export` does).
Exit status 1 when a batch could not be read or a frame not reassembled.
"""


_BATCH_FIELDS = (
    "batch",
    "seq",
    "device_id",
    "start_ms",
    "end_ms",
    "policy_version",
    "dataset_key_id",
    "app_ids",
    "counts",
    "format",
    "body_size",
    "body_format",
    "records",
    "images",
    "image_bytes",
)


class UnreadableError(Exception):
    """A file or directory that cannot be read; the message names it (exit 1)."""


@dataclass(frozen=True, slots=True)
class _Body:
    """A batch body, decoded."""

    format: int
    records: list[Record]
    images: dict[str, bytes]


def _read_header(header_path: Path) -> BatchHeader:
    """The header at ``header_path``; raises ``UnreadableError``."""
    from agent.sinks.directory import HEADER_SUFFIX

    try:
        header = BatchHeader.from_json(header_path.read_bytes())
    except (OSError, FormatError) as exc:
        raise UnreadableError(f"{header_path}: {_reason(exc)}") from exc
    # Checked so that a header cannot name files outside OUT (--frames).
    if header_path.name != f"{header.seq:012d}-{header.batch_id}{HEADER_SUFFIX}":
        raise UnreadableError(f"{header_path}: the name does not match the header's seq and id")
    return header


def _read_body(header_path: Path, header: BatchHeader) -> _Body:
    """The body next to ``header_path``, decoded; raises ``UnreadableError``."""
    from agent.sinks.directory import BODY_SUFFIX, HEADER_SUFFIX

    body_path = header_path.with_name(header_path.name[: -len(HEADER_SUFFIX)] + BODY_SUFFIX)
    try:
        body = body_path.read_bytes()
    except OSError as exc:
        raise UnreadableError(f"{body_path}: {_reason(exc)}") from exc
    if len(body) != header.body_size:
        raise UnreadableError(
            f"{body_path}: the body is {len(body)} bytes, its header says {header.body_size}"
        )
    try:
        records, images = decode_body(body)
    except FormatError as exc:
        raise UnreadableError(f"{body_path}: {exc}") from exc
    return _Body(body[4], records, images)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror or exc}"
    return str(exc)


class _FrameProblem(Exception):
    """A screenshot record that does not reassemble into a frame."""


class _FrameChains:
    """Reassembles a batch's screenshots in body order, as ``overt export`` does:
    a keyframe starts a chain, a delta applies to its chain's latest frame."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.images = images
        self.frames: dict[str, Image.Image] = {}
        #: Chains a delta could not be applied to: its record index.
        self.broken: dict[str, int] = {}

    def frame(self, index: int, rec: ScreenshotRecord) -> Image.Image:
        from PIL import Image

        from overt.wire.frames import reassemble

        blob = self.images.get(rec.image)
        if blob is None:
            raise _FrameProblem(f"the batch holds no image {rec.image}")
        if min(rec.width, rec.height) <= 0 or rec.width * rec.height > _MAX_FRAME_PIXELS:
            raise _FrameProblem(f"impossible size {rec.width}x{rec.height}")
        try:
            if rec.kind is ScreenshotKind.KEYFRAME:
                img = reassemble(blob)
                if img.size != (rec.width, rec.height):
                    raise _FrameProblem(
                        f"the keyframe is {img.size[0]}x{img.size[1]}, "
                        f"its record says {rec.width}x{rec.height}"
                    )
                self.frames[rec.image] = img
                self.broken.pop(rec.image, None)
                return img
            if rec.base is None:
                raise _FrameProblem("missing base: the delta names no keyframe")
            if rec.base in self.broken:
                raise _FrameProblem(
                    f"its chain (keyframe {rec.base}) broke at record {self.broken[rec.base]}"
                )
            base = self.frames.get(rec.base)
            if base is None:
                raise _FrameProblem(
                    f"missing base: keyframe {rec.base} is not earlier in the batch"
                )
            try:
                img = reassemble(_raw(base), [(rec, blob)])
            except FormatError:
                del self.frames[rec.base]
                self.broken[rec.base] = index
                raise
            self.frames[rec.base] = img
            return img
        except (FormatError, Image.DecompressionBombError) as exc:
            raise _FrameProblem(str(exc)) from exc


def _raw(img: Image.Image) -> bytes:
    """A frame as PPM bytes, the cheapest base ``reassemble`` takes."""
    return b"P6 %d %d 255\n" % img.size + img.tobytes()


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def frame_name(header: BatchHeader, index: int) -> str:
    """The PNG file of the screenshot at ``index`` in a batch (``--frames``)."""
    return f"{header.seq:012d}-{header.batch_id}-{index:06d}.png"


def _json_value(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a corrupt body's double; JSON has no NaN
    return value


def batch_json(
    file: str, header: BatchHeader | None, body: _Body | None, error: str | None
) -> dict[str, object]:
    """The ``"batch"`` object of ``--json``: what is known of the batch, null
    where its header or body could not be read (``error`` says why)."""
    doc: dict[str, object] = {"kind": "batch", "file": file}
    doc |= dict.fromkeys(_BATCH_FIELDS)
    if header is not None:
        doc |= {
            "batch": header.batch_id,
            "seq": header.seq,
            "device_id": header.device_id,
            "start_ms": header.start_ms,
            "end_ms": header.end_ms,
            "policy_version": header.policy_version,
            "dataset_key_id": header.dataset_key_id,
            "app_ids": list(header.app_ids),
            "counts": {f.name: getattr(header.counts, f.name) for f in fields(header.counts)},
            "format": header.format,
            "body_size": header.body_size,
        }
    if body is not None:
        doc |= {
            "body_format": body.format,
            "records": len(body.records),
            "images": len(body.images),
            "image_bytes": sum(map(len, body.images.values())),
        }
    doc["error"] = error
    return doc


def record_json(
    header: BatchHeader, index: int, rec: Record, images: dict[str, bytes]
) -> dict[str, object]:
    """The ``--json`` object of one record: its kind, where it is, and every field.

    A record's own ``kind`` field (path, screenshot, marker) is named
    ``<kind>_kind``, since ``kind`` is the record's kind.
    """
    kind = RECORD_KINDS[type(rec)]
    out: dict[str, object] = {
        "kind": kind,
        "batch": header.batch_id,
        "seq": header.seq,
        "index": index,
    }
    for f in fields(rec):
        out[f"{kind}_kind" if f.name == "kind" else f.name] = _json_value(getattr(rec, f.name))
    if isinstance(rec, MousePathRecord):
        same = len(rec.dt) == len(rec.dx) == len(rec.dy)
        out["points"] = [list(p) for p in rec.points()] if same else None
    elif isinstance(rec, ScreenshotRecord):
        blob = images.get(rec.image)
        out["image_bytes"] = None if blob is None else len(blob)
    return out


def run_batches(args: argparse.Namespace) -> int:
    """``overt agent batches``: exit status 1 when a batch or a frame could not be read."""
    from agent.sinks.directory import HEADER_SUFFIX

    directory: Path = args.directory
    try:
        with os.scandir(directory) as entries:
            names = sorted(
                e.name
                for e in entries
                if e.name.endswith(HEADER_SUFFIX) and not e.name.startswith(".")
            )
    except OSError as exc:
        raise UnreadableError(f"{directory}: {_reason(exc)}") from exc
    out: Path | None = args.frames
    if out is not None:
        try:
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise UnreadableError(f"{out}: cannot create it: {exc.strerror or exc}") from exc

    def complain(message: str) -> None:
        print(f"{args.prog}: error: {message}", file=sys.stderr)

    read = unreadable = written = unframed = 0
    for name in names:
        header_path = directory / name
        header = body = None
        try:
            header = _read_header(header_path)
            body = _read_body(header_path, header)
        except UnreadableError as exc:
            complain(str(exc))
            unreadable += 1
            if args.json:
                print(_dumps(batch_json(name, header, body, str(exc))))
            continue
        read += 1
        frames: dict[int, tuple[str | None, str | None]] = {}
        if out is not None:
            frames = _write_frames(header, body, out)
            for index, (png, problem) in frames.items():
                if png is not None:
                    written += 1
                else:
                    complain(f"{header_path}: record {index}: {problem}")
                    unframed += 1
        if args.json:
            print(_dumps(batch_json(name, header, body, None)))
            for index, rec in enumerate(body.records):
                doc = record_json(header, index, rec, body.images)
                if index in frames:
                    doc["png"], doc["frame_error"] = frames[index]
                print(_dumps(doc))
        else:
            _print_batch(header, body, frames, records=args.records)
    if not args.json:
        summary = f"{read} batch(es) in {directory}"
        if unreadable:
            summary += f", {unreadable} unreadable"
        if out is not None:
            summary += f"; {written} frame(s) written to {out}"
            if unframed:
                summary += f", {unframed} not reassembled"
        print(summary)
    return 1 if unreadable or unframed else 0


def _write_frames(
    header: BatchHeader, body: _Body, out: Path
) -> dict[int, tuple[str | None, str | None]]:
    """Writes a batch's screenshots into ``out``: by record index, the PNG's
    name or why there is none."""
    from overt.files import atomic_write

    chains = _FrameChains(body.images)
    frames: dict[int, tuple[str | None, str | None]] = {}
    for index, rec in enumerate(body.records):
        if not isinstance(rec, ScreenshotRecord):
            continue
        try:
            img = chains.frame(index, rec)
        except _FrameProblem as exc:
            frames[index] = (None, str(exc))
            continue
        png = frame_name(header, index)
        atomic_write(out / png, _png(img), mode=0o600)
        frames[index] = (png, None)
    return frames


def _print_batch(
    header: BatchHeader,
    body: _Body,
    frames: dict[int, tuple[str | None, str | None]],
    *,
    records: bool,
) -> None:
    counts = ", ".join(
        f"{f.name} {getattr(header.counts, f.name)}"
        for f in fields(header.counts)
        if getattr(header.counts, f.name)
    )
    print(
        f"#{header.seq} {_when(header.start_ms)} to {_when(header.end_ms)} UTC, "
        f"{header.body_size} bytes, apps: {', '.join(header.app_ids) or '-'}; {counts}"
    )
    if not records:
        return
    for index, rec in enumerate(body.records):
        print(f"    {rec}")
        png = frames.get(index, (None, None))[0]
        if png is not None:
            print(f"      frame {png}")
    for image_id, blob in body.images.items():
        print(f"    image {image_id}: {len(blob)} bytes")


def _dumps(doc: dict[str, object]) -> str:
    return json.dumps(doc, ensure_ascii=True, allow_nan=False)
