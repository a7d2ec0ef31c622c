"""``overt agent ...``: run the capture agent, enroll it, give or refuse consent,
inspect batches.

This module is an entry point: it reads arguments, the environment and the
terminal, configures logging, builds one :class:`~agent.config.AgentConfig`
and hands it to :class:`~agent.service.AgentService` (capture, sealing, the
spool, upload, policy sync and the control socket). Consent can be given here
on the terminal (``overt agent consent``), or through the control API while
the agent runs (``overt consent``, the tray).

``overt agent batches`` reads a development sink directory
(``agent.sinks.directory``); its ``--json`` lines and ``--frames`` file names
are an interface for scripts and checks, written down in its ``--help``.

Exit status: 0 on success; 1 when the agent cannot run (no display, no usable
policy, unreadable state), or a batch or frame cannot be read, with a
one-line reason; 2 on a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from agent.config import AgentConfig, default_state_dir
from agent.control import ControlError
from agent.local_state import LocalState, LocalStateError
from agent.pipeline.consent import ConsentRecord, capture_surface, surface_widening
from agent.policy_source import load_policy
from agent.remote import CollectorError
from agent.sinks.base import SinkError
from agent.sources.errors import SourceError
from overt.wire.batch import BatchHeader
from overt.wire.body import decode_body
from overt.wire.errors import FormatError as PipelineError
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
from policies.errors import PolicyError
from policies.keys import load_public_key, public_key_model
from policies.model import SignerSet
from policies.summary import describe

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)


class _UsageError(Exception):
    """Arguments that parse but make no sense together (exit 2)."""


class _NoPolicyError(Exception):
    """No usable policy: the reason is already in words (exit 1)."""


def _add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="SIGNED.json",
        help="a signed policy file to accept (default: the last good policy in --state)",
    )
    parser.add_argument(
        "--trust",
        action="append",
        required=True,
        metavar="KEY.pub",
        help="a pinned policy signing public key (repeatable)",
    )
    parser.add_argument("--threshold", type=int, default=1, metavar="N")
    parser.add_argument(
        "--tenant", help="this device's tenant (default: the one it is enrolled in)"
    )
    parser.add_argument(
        "--device-group", help="this device's group (default: the one it is enrolled in)"
    )
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        metavar="DIR",
        help="the agent's state directory (default: $XDG_STATE_HOME/overt)",
    )


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="The Overt capture agent.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="capture in the allow-listed apps until stopped (Ctrl+C)",
        description="Capture in the policy's allow-listed apps, after consent. Batches are "
        "sealed to the dataset key and kept in the spool until uploaded to the collector "
        "this device is enrolled with. Serves the control socket that the tray and "
        "`overt status|pause|...` use. Stops on Ctrl+C or SIGTERM and spools what it holds.",
    )
    _add_policy_arguments(run)
    run.add_argument(
        "--sink",
        type=Path,
        metavar="DIR",
        help="development only: write batches unsealed to DIR instead of the spool",
    )
    run.add_argument(
        "--batch-seconds",
        type=float,
        default=None,
        metavar="S",
        help="close a batch after S seconds (default 60; shorter for demos and tests)",
    )
    run.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="the control socket (default: $XDG_RUNTIME_DIR/overt/agent.sock)",
    )
    run.add_argument(
        "--minutes", type=float, default=None, help="stop by itself after this many minutes"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log what the agent does")

    consent = commands.add_parser(
        "consent",
        help="read the capture notice of the policy and accept or decline it",
        description="Show what the policy captures, in plain words, and record your answer. "
        "Without --accept or --decline the question is asked on the terminal.",
    )
    _add_policy_arguments(consent)
    answer = consent.add_mutually_exclusive_group()
    answer.add_argument("--accept", action="store_true", help="accept without asking")
    answer.add_argument("--decline", action="store_true", help="decline without asking")

    enroll = commands.add_parser(
        "enroll",
        help="register this device with a collector, using a one-time token from an admin",
    )
    enroll.add_argument("--collector", required=True, metavar="URL")
    enroll.add_argument("--token", required=True, metavar="TOKEN")
    enroll.add_argument("--state", type=Path, default=None, metavar="DIR")

    batches = commands.add_parser(
        "batches",
        help="list the batches in a sink directory (add --records to see their content)",
        description="List the batches that `overt agent run --sink DIR` wrote, in sequence "
        "order. A batch that cannot be read is named on stderr, the others are still listed, "
        "and the exit status is 1.",
        epilog=_BATCHES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batches.add_argument("directory", type=Path, metavar="DIR")
    batches.add_argument("--records", action="store_true", help="print every record")
    batches.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: each batch's header, then each of its records",
    )
    batches.add_argument(
        "--frames",
        type=Path,
        metavar="OUT",
        help="write every screenshot, reassembled, as a PNG into OUT",
    )
    batches.set_defaults(prog=batches.prog)
    return parser


def _config(args: argparse.Namespace) -> AgentConfig:
    keys = [public_key_model(load_public_key(path)) for path in args.trust]
    if len({k.keyid for k in keys}) != len(keys):
        raise _UsageError("the same --trust key was given twice")
    if not 1 <= args.threshold <= len(keys):
        raise _UsageError("--threshold must be between 1 and the number of --trust keys")
    state_dir = args.state if args.state is not None else default_state_dir()
    tenant, group = args.tenant, args.device_group
    if tenant is None or group is None:
        enrollment = LocalState(state_dir).enrollment()
        if enrollment is None:
            raise _UsageError(
                "this device is not enrolled: give --tenant and --device-group, "
                "or enroll it first (overt agent enroll)"
            )
        tenant = tenant or enrollment.tenant
        group = group or enrollment.group
    return AgentConfig(
        trusted=SignerSet(keys=tuple(keys), threshold=args.threshold),
        tenant=tenant,
        device_group=group,
        state_dir=state_dir,
        policy_file=args.policy,
    )


def _consent(args: argparse.Namespace) -> int:
    config = _config(args)
    local = LocalState(config.state_dir)
    now = time.time()
    loaded = load_policy(local.trust, config.trusted, config.device, now, config.policy_file)
    if loaded.policy is None:
        raise _NoPolicyError(loaded.problem or "no policy has been installed")
    policy = loaded.policy
    previous = local.consent()
    print(f"Capture notice — policy version {policy.version}\n")
    print(describe(policy))
    if previous is not None and previous.accepted:
        wider = surface_widening(previous.surface, capture_surface(policy))
        if wider:
            print(f"\nSince you last agreed (policy version {previous.policy_version}), it:")
            for line in wider:
                print(f"  - {line}")
    print(
        "\nYou can pause capture at any time for up to "
        f"{policy.pause.max_minutes} minutes, discard recent minutes before upload, "
        "and request an exemption."
    )
    if args.accept:
        accepted = True
    elif args.decline:
        accepted = False
    else:
        if not sys.stdin.isatty():
            raise _UsageError("no terminal to ask on: pass --accept or --decline")
        reply = input("\nDo you agree to capture under this policy? [y/N] ")
        accepted = reply.strip().lower() in {"y", "yes"}
    record = (ConsentRecord.accept if accepted else ConsentRecord.decline)(policy, now)
    local.save_consent(record)
    print("Consent recorded: " + ("accepted." if accepted else "declined; nothing is captured."))
    return 0


def _enroll(args: argparse.Namespace) -> int:
    import httpx

    from agent.remote import enroll

    state_dir = args.state if args.state is not None else default_state_dir()
    local = LocalState(state_dir)
    with httpx.Client(base_url=args.collector, timeout=30.0) as client:
        enrollment = enroll(client, local, args.token, time.time)
    print(
        f"enrolled device {enrollment.device_id} with {enrollment.collector} "
        f"(tenant {enrollment.tenant}, group {enrollment.group})"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from agent.control import default_socket_path
    from agent.service import AgentService
    from agent.sinks.directory import DirectorySink
    from agent.sources.input import select_input_hooks
    from agent.sources.power import select_conditions_probe
    from agent.sources.screen import select_screen_grabber
    from agent.sources.window import select_window_probe

    config = _config(args)
    if args.batch_seconds is not None:
        if not 1 <= args.batch_seconds <= 3600:
            raise _UsageError("--batch-seconds must be between 1 and 3600")
        config = dataclasses.replace(config, batch_max_age_seconds=args.batch_seconds)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    probe = select_window_probe()
    hooks = select_input_hooks(config.clock)
    grabber = select_screen_grabber()
    service = AgentService(
        config,
        probe=probe,
        hooks=hooks,
        grabber=grabber,
        conditions=select_conditions_probe(),
        socket_path=args.socket if args.socket is not None else default_socket_path(),
        sink=None if args.sink is None else DirectorySink(args.sink),
    )
    try:
        service.start()
    except BaseException:
        probe.close()
        grabber.close()
        raise
    agent = service.agent
    status = agent.status()
    if status.capturing:
        print(f"capturing under policy version {status.policy_version}; Ctrl+C stops")
    else:
        print(
            f"not capturing: {status.reason.value}"
            + (f" ({status.problem})" if status.problem else "")
        )
    deadline = None if args.minutes is None else time.monotonic() + args.minutes * 60
    try:
        while not stop.wait(1.0):
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        service.stop()
        probe.close()
        grabber.close()
    final = agent.status()
    where = args.sink if args.sink is not None else "the spool"
    print(
        f"stopped: {final.batches_written} batches written to {where}, "
        f"{final.events_seen} events seen, {final.events_lost} lost"
    )
    return 0


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


# ------------------------------------------------------------ overt agent batches

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

_BATCHES_EPILOG = """\
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


class _UnreadableError(Exception):
    """A file or directory that cannot be read; the message names it (exit 1)."""


@dataclass(frozen=True, slots=True)
class _Body:
    """A batch body, decoded."""

    format: int
    records: list[Record]
    images: dict[str, bytes]


def _read_header(header_path: Path) -> BatchHeader:
    """The header at ``header_path``; raises ``_UnreadableError``."""
    from agent.sinks.directory import HEADER_SUFFIX

    try:
        header = BatchHeader.from_json(header_path.read_bytes())
    except (OSError, PipelineError) as exc:
        raise _UnreadableError(f"{header_path}: {_reason(exc)}") from exc
    # Checked so that a header cannot name files outside OUT (--frames).
    if header_path.name != f"{header.seq:012d}-{header.batch_id}{HEADER_SUFFIX}":
        raise _UnreadableError(f"{header_path}: the name does not match the header's seq and id")
    return header


def _read_body(header_path: Path, header: BatchHeader) -> _Body:
    """The body next to ``header_path``, decoded; raises ``_UnreadableError``."""
    from agent.sinks.directory import BODY_SUFFIX, HEADER_SUFFIX

    body_path = header_path.with_name(header_path.name[: -len(HEADER_SUFFIX)] + BODY_SUFFIX)
    try:
        body = body_path.read_bytes()
    except OSError as exc:
        raise _UnreadableError(f"{body_path}: {_reason(exc)}") from exc
    if len(body) != header.body_size:
        raise _UnreadableError(
            f"{body_path}: the body is {len(body)} bytes, its header says {header.body_size}"
        )
    try:
        records, images = decode_body(body)
    except PipelineError as exc:
        raise _UnreadableError(f"{body_path}: {exc}") from exc
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
            except PipelineError:
                del self.frames[rec.base]
                self.broken[rec.base] = index
                raise
            self.frames[rec.base] = img
            return img
        except (PipelineError, Image.DecompressionBombError) as exc:
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


def _batches(args: argparse.Namespace) -> int:
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
        raise _UnreadableError(f"{directory}: {_reason(exc)}") from exc
    out: Path | None = args.frames
    if out is not None:
        try:
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _UnreadableError(f"{out}: cannot create it: {exc.strerror or exc}") from exc

    def complain(message: str) -> None:
        print(f"{args.prog}: error: {message}", file=sys.stderr)

    read = unreadable = written = unframed = 0
    for name in names:
        header_path = directory / name
        header = body = None
        try:
            header = _read_header(header_path)
            body = _read_body(header_path, header)
        except _UnreadableError as exc:
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


_HANDLERS = {"run": _run, "consent": _consent, "enroll": _enroll, "batches": _batches}


def main(argv: Sequence[str], prog: str = "overt agent") -> int:
    parser = _parser(prog)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    else:
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    command = f"{prog} {args.command}"
    try:
        return _HANDLERS[args.command](args)
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(f"{command}: error ({exc.label}): {exc}", file=sys.stderr)
        return 1
    except (
        _NoPolicyError,
        _UnreadableError,
        SourceError,
        LocalStateError,
        PipelineError,
        SinkError,
        CollectorError,
        ControlError,
        OSError,
    ) as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 1
