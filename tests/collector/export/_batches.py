"""Sealed batches for the export tests, made the way the agent makes them.

``Recorder`` drives the real agent ``Pipeline`` (real ``FrameEncoder``, real
body encoding) with events and window frames and keeps what it grabbed, so a
test can compare the export with what went in. ``make_batch`` builds a batch
straight from records. ``Keys`` seals them with ``overt.wire.sealed.seal_batch``
under keys generated per test.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from PIL import Image, ImageDraw

from agent.events import AppIdentity, Frame, Rect, SourceEvent, WindowInfo
from agent.pipeline.batcher import Batcher
from agent.pipeline.codecs import Codec, CodecChooser, encode_image
from agent.pipeline.decision import Decision, Reason
from agent.pipeline.pipeline import Action, BatchReady, Pipeline
from agent.pipeline.screens import FrameEncoder, GrabRequest
from collector.export.opening import UnopenedBatch
from overt.wire.batch import Batch, BatchHeader, count_signals
from overt.wire.body import encode_body
from overt.wire.records import MarkerKind, MousePathRecord, Record, TextSpanRecord, to_ms
from overt.wire.sealed import seal_batch
from policies.model import KeyMode, Redaction, Screenshots, TitleAction

T = 1_800_000_000.0
T_MS = to_ms(T)
DEVICE = "0f" * 16

EDITOR = WindowInfo(7, AppIdentity(process_name="editor"), "Report.odt", Rect(100, 50, 320, 200))
SHOTS = Screenshots(min_interval_seconds=1.0, max_per_minute=60, quality=95)


def decision(app_id: str = "editor", shots: Screenshots | None = SHOTS) -> Decision:
    return Decision(
        capture=True,
        reason=Reason.CAPTURING,
        app_id=app_id,
        keys=KeyMode.TEXT,
        mouse=True,
        screenshots=shots,
        title=TitleAction.KEEP,
    )


class PngCodec(CodecChooser):
    """Lossless frames (PNG), so that reassembled frames can be compared exactly."""

    def encode(self, img: Image.Image, quality: int) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()


class LossyCodec(CodecChooser):
    """Lossy WebP whatever the content (the chooser would take lossless for
    screen content when it has the time)."""

    def encode(self, img: Image.Image, quality: int) -> bytes:
        return encode_image(img, quality, codec=Codec.LOSSY)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def screen(
    width: int, height: int, label: int, marks: Sequence[tuple[int, int]] = ()
) -> Image.Image:
    """A window's content: a background per ``label`` and a few dark squares."""
    img = Image.new("RGB", (width, height), (240, 240 - 20 * (label % 8), 230))
    draw = ImageDraw.Draw(img)
    draw.rectangle((4, 4, width - 5, 20), fill=(30, 60, 120))
    for x, y in marks:
        draw.rectangle((x, y, x + 9, y + 9), fill=(10, 10, 10))
    return img


def batch_id(device_id: str, n: int) -> str:
    return hashlib.sha256(f"{device_id}/{n}".encode()).hexdigest()[:32]


@dataclass
class Recorder:
    """The agent's pipeline with a fake screen: grab requests are answered at once
    (30 ms after the request) with whatever ``screens`` holds for the window."""

    device_id: str = DEVICE
    codec: CodecChooser | None = None
    max_age_s: float = 60.0
    screens: dict[int, Image.Image] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    #: (frame time in ms, window id, the image grabbed), in order.
    grabbed: list[tuple[int, int, Image.Image]] = field(default_factory=list)

    def __post_init__(self) -> None:
        numbers = iter(range(1, 10**6))
        batcher = Batcher(
            device_id=self.device_id,
            policy_version=1,
            dataset_key_id="ds-2027",
            next_seq=1,
            max_age_s=self.max_age_s,
            new_id=lambda: batch_id(self.device_id, next(numbers)),
        )
        encoder = FrameEncoder(codec=self.codec or CodecChooser())
        self.pipeline = Pipeline(redaction=Redaction(), batcher=batcher, encoder=encoder)

    def feed(self, events: Sequence[SourceEvent], window: WindowInfo, d: Decision) -> None:
        for ev in events:
            self._handle(self.pipeline.feed(ev, d, window, ev.t), d)

    def tick(self, now: float, d: Decision) -> None:
        self._handle(self.pipeline.tick(now), d)

    def marker(self, kind: MarkerKind, now: float, d: Decision) -> None:
        self._handle(self.pipeline.marker(kind, now), d)

    def flush(self, now: float) -> list[Batch]:
        self.batches += self.pipeline.flush(now)
        return self.batches

    def _handle(self, actions: list[Action], d: Decision) -> None:
        for action in actions:
            if isinstance(action, BatchReady):
                self.batches.append(action.batch)
            elif isinstance(action, GrabRequest):
                w = action.window
                img = self.screens[w.window_id]
                t = action.t + 0.03
                frame = Frame(t, w.window_id, w.rect, img.width, img.height, img.tobytes())
                self.grabbed.append((to_ms(t), w.window_id, img.copy()))
                self._handle(self.pipeline.feed_frame(frame, d, t), d)


def _end_ms(r: Record) -> int:
    if isinstance(r, TextSpanRecord):
        return max(r.t, r.end)
    if isinstance(r, MousePathRecord):
        return r.t + sum(r.dt)
    return r.t


def make_batch(
    records: Sequence[Record],
    images: dict[str, bytes] | None = None,
    *,
    seq: int,
    device_id: str = DEVICE,
) -> Batch:
    """A batch of exactly these records, with the header the Batcher would write."""
    images = images or {}
    body = encode_body(records, images)
    header = BatchHeader(
        device_id=device_id,
        batch_id=batch_id(device_id, seq),
        seq=seq,
        start_ms=min(r.t for r in records),
        end_ms=max(_end_ms(r) for r in records),
        policy_version=1,
        dataset_key_id="ds-2027",
        counts=count_signals(records),
        app_ids=tuple(sorted({r.app_id for r in records if hasattr(r, "app_id")})),
        body_size=len(body),
    )
    return Batch(header, body)


@dataclass
class Keys:
    """A dataset key pair and device keys, generated for one test."""

    dataset: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)
    devices: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    def device(self, device_id: str) -> Ed25519PrivateKey:
        return self.devices.setdefault(device_id, Ed25519PrivateKey.generate())

    def seal(self, batch: Batch) -> bytes:
        h = batch.header
        return seal_batch(
            h.to_json(), batch.body, self.dataset.public_key(), self.device(h.device_id)
        )

    def stored(self, batch: Batch, sealed: bytes | None = None) -> UnopenedBatch:
        h = batch.header
        return UnopenedBatch(
            device_id=h.device_id,
            seq=h.seq,
            batch_id=h.batch_id,
            device_key=self.device(h.device_id).public_key(),
            sealed=self.seal(batch) if sealed is None else sealed,
        )
