"""Export throughput: MB/s of stored (sealed) batches turned into a dataset.

Run:  .venv/bin/python bench/export.py [--batches N] [--runs R] [--seed S]
                                        [--png-level L] [--jobs J] [--keep DIR]
      .venv/bin/python bench/export.py --store N [--pool K] [--hostile P ...]
                                        [--runs R] [--jobs J] [--tmp DIR]

Makes ``--batches`` (300) realistic sealed batches with the real agent
pipeline, then times ``overt export`` on them. The workload is scripted from
a seed: a person working in two 1280x800 windows (a document editor and a
browser page) with the office-suite screenshot settings of
``policies/examples/office.json`` (at least 5 s apart, 6 per minute, max
width 1280, quality 50) — clicks after a pointer approach sampled at 100 Hz,
typing at about 8 keys/s in text mode (the page shows the text as it is
typed), scroll bursts that move the page, a switch to the other window every
few actions, reading pauses and the odd long idle stretch. Frames go through
the agent's ``FrameEncoder`` with its own codec choice (WebP where it fits
its time budget, else JPEG), batches through ``Batcher`` (60 s) and are
sealed with ``overt.wire.sealed.seal_batch`` under keys generated per run.

Measured, each the median of ``--runs``:

- **core**: :func:`collector.export.run.export_batches` over the batches in memory
  into a new directory on the same disk as the temporary directory
  (verify, decrypt, decode, validate, reassemble every frame, PNG-encode the
  frames actions refer to, write and fsync), with the PNG frames compressed
  on the calling thread (``jobs 0``) and on ``--jobs`` threads (the
  command's default: the cores, at most 4);
- **open only**: the trust step alone (:func:`collector.export.opening.open_batch`
  on every batch), to show where the time goes;
- **store**: the command's own path, ``open_store`` on a collector data
  directory (``collector.store.sqlite.SQLiteStorage``) filled with the same
  batches, then ``export_batches`` over ``CollectorStore.batches()`` with
  ``--jobs`` threads.

With ``--store N`` it measures instead the command as the data team runs
it, on a collector data directory of N batches: ``--pool`` (200) batches of
the workload above, stored again under as many enrolled devices as it takes
(each copy re-headed with its device, sequence number and batch id and
sealed anew), one store for each ``--hostile`` percent (0 and 1): that
share of them, spread evenly, replaced by batches a malicious enrolled
device could seal (a zstd frame declaring 16 GiB, one declaring no size
and past the limit, 2,000,000 records, one record over the limit, a
4,000,000-character text, 20 keyframes of 8192 x 8192, a PNG of 13000 x
13000 that its record calls 64 x 48, a delta whose tiles image is 13000 x
13000, an image of random bytes, nine delta chains held at once). Each of
``--runs`` exports
is ``python -m overt export --jobs J`` in a child of a small harness that
reads the child's peak resident memory with ``getrusage(RUSAGE_CHILDREN)``;
the dataset is deleted after each run.

MB are 10^6 bytes of sealed batches as stored. Results go in BENCHMARKS.md
by hand.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zstandard
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from PIL import Image, ImageDraw

from agent.events import (
    AppIdentity,
    FocusChange,
    Frame,
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
from agent.pipeline.screens import GrabRequest
from bench._machine import machine
from collector.config import StorageConfig
from collector.export.opening import UnopenedBatch, open_batch
from collector.export.run import ExportConfig, export_batches
from collector.export.store import open_store
from collector.store.records import AuditEvent, BatchWrite, EnrollmentTokenRecord
from collector.store.sqlite import SQLiteStorage
from overt.wire.batch import Batch, BatchHeader, SignalCounts, count_signals
from overt.wire.body import BODY_FORMAT, BODY_MAGIC, MAX_RECORDS, MAX_SECTION_BYTES, encode_body
from overt.wire.frames import image_id
from overt.wire.records import (
    ClickRecord,
    ContextRecord,
    KeyTimingRecord,
    Record,
    ScreenshotKind,
    ScreenshotRecord,
    TextSpanRecord,
    TitleState,
)
from overt.wire.sealed import seal_batch
from policies.model import KeyMode, Redaction, Screenshots, TitleAction

T0 = 1_800_000_000.0
DEVICE = "b3" * 16
W, H = 1280, 800
OFFICE_SHOTS = Screenshots(min_interval_seconds=5, max_per_minute=6, max_width=1280, quality=50)
WORDS = [
    "the",
    "quarterly",
    "report",
    "shows",
    "revenue",
    "growth",
    "in",
    "every",
    "region",
    "except",
    "the",
    "north",
    "where",
    "shipping",
    "delays",
    "and",
    "a",
    "supplier",
    "change",
    "held",
    "back",
    "orders",
    "please",
    "review",
    "the",
    "attached",
    "figures",
    "before",
    "thursday",
    "and",
    "send",
    "comments",
    "to",
    "the",
    "finance",
    "team",
    "meeting",
    "notes",
    "follow",
]


class Page:
    """A tall page seen through a window-sized viewport; typing and clicks draw on it."""

    def __init__(self, rng: random.Random, tint: tuple[int, int, int]) -> None:
        self.img = Image.new("RGB", (W, 4 * H), tint)
        self.draw = ImageDraw.Draw(self.img)
        self.top = 0
        for y in range(60, 4 * H - 20, 22):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))
            self.draw.text((40, y), words, fill=(30, 30, 30))
        for _ in range(12):
            x, y = rng.randrange(40, W - 300), rng.randrange(0, 4 * H - 200)
            self.draw.rectangle((x, y, x + 260, y + 160), outline=(40, 90, 160), width=2)
        self.caret = (40, 40)

    def view(self) -> Image.Image:
        return self.img.crop((0, self.top, W, self.top + H))

    def scroll(self, ticks: int) -> None:
        self.top = max(0, min(3 * H, self.top + 40 * ticks))

    def type(self, ch: str) -> None:
        x, y = self.caret
        self.draw.text((x, self.top + y), ch, fill=(0, 0, 0))
        x += 7
        if x > W - 60:
            x, y = 40, y + 22 if y < H - 60 else 40
        self.caret = (x, y)

    def mark(self, x: int, y: int) -> None:
        self.draw.rectangle((x - 6, self.top + y - 6, x + 6, self.top + y + 6), fill=(250, 200, 0))


class Workload:
    """Drives the real pipeline with a scripted person; collects the batches."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        numbers = iter(range(1, 10**9))
        self.batcher = Batcher(
            device_id=DEVICE,
            policy_version=3,
            dataset_key_id="ds-2027",
            next_seq=1,
            new_id=lambda: hashlib.sha256(b"%d" % next(numbers)).hexdigest()[:32],
        )
        self.pipeline = Pipeline(redaction=Redaction(), batcher=self.batcher)
        self.windows = [
            WindowInfo(
                21,
                AppIdentity("soffice", "libreoffice", "libreoffice-writer"),
                "Q3 report.odt - LibreOffice Writer",
                Rect(0, 40, W, H),
            ),
            WindowInfo(
                22,
                AppIdentity("firefox", "Navigator", "firefox"),
                "Finance dashboard - Mozilla Firefox",
                Rect(0, 40, W, H),
            ),
        ]
        self.decisions = {
            21: self._decision("office-suite", KeyMode.TEXT),
            22: self._decision("browser", KeyMode.SHORTCUTS),
        }
        self.pages = {
            21: Page(self.rng, (252, 252, 250)),
            22: Page(self.rng, (245, 248, 255)),
        }
        self.batches: list[Batch] = []
        self.now = T0
        self.active = self.windows[0]
        self.pointer = (400, 300)

    @staticmethod
    def _decision(app_id: str, keys: KeyMode) -> Decision:
        return Decision(
            capture=True,
            reason=Reason.CAPTURING,
            app_id=app_id,
            keys=keys,
            mouse=True,
            screenshots=OFFICE_SHOTS,
            title=TitleAction.KEEP,
        )

    def run(self, batches: int) -> list[Batch]:
        self._feed([FocusChange(self.now, self.active)])
        while len(self.batches) < batches:
            self._act()
        self.batches += self.pipeline.flush(self.now)
        return self.batches[:batches]

    def _act(self) -> None:
        r = self.rng.random()
        if r < 0.40:
            self._click()
        elif r < 0.70:
            self._type()
        elif r < 0.85:
            self._scroll()
        elif r < 0.95:
            self.active = self.windows[1] if self.active is self.windows[0] else self.windows[0]
            self._feed([FocusChange(self.now, self.active)])
        else:
            self._wait(self.rng.uniform(20, 90))
        self._wait(self.rng.uniform(1, 4))

    def _click(self) -> None:
        rect = self.active.rect
        tx, ty = self.rng.randrange(20, W - 20), self.rng.randrange(20, H - 20)
        (x0, y0), steps = self.pointer, self.rng.randint(30, 70)
        moves: list[SourceEvent] = []
        for i in range(1, steps + 1):
            s = i / steps
            e = s * s * (3 - 2 * s)  # ease in and out
            self.now += 0.01
            moves.append(
                MouseMove(
                    self.now, rect.x + round(x0 + (tx - x0) * e), rect.y + round(y0 + (ty - y0) * e)
                )
            )
        self._feed(moves)
        self.pages[self.active.window_id].mark(tx, ty)
        self.now += 0.15
        press = MouseButton(self.now, rect.x + tx, rect.y + ty, "left", True)
        self.now += 0.09
        release = MouseButton(self.now, rect.x + tx, rect.y + ty, "left", False)
        self._feed([press, release])
        self.pointer = (tx, ty)

    def _type(self) -> None:
        page = self.pages[self.active.window_id]
        text = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(2, 7)))
        events: list[SourceEvent] = []
        for ch in text:
            self.now += self.rng.uniform(0.07, 0.2)
            key = "space" if ch == " " else ch
            page.type(ch)
            events = [KeyEvent(self.now, key, True, ch), KeyEvent(self.now + 0.05, key, False, ch)]
            self._feed(events)
        if self.rng.random() < 0.2:
            self.now += 0.4
            self._feed(
                [
                    KeyEvent(self.now, "ctrl", True),
                    KeyEvent(self.now + 0.05, "s", True, "\x13"),
                    KeyEvent(self.now + 0.1, "s", False, "\x13"),
                    KeyEvent(self.now + 0.15, "ctrl", False),
                ]
            )

    def _scroll(self) -> None:
        rect, page = self.active.rect, self.pages[self.active.window_id]
        ticks = self.rng.choice((-1, 1)) * self.rng.randint(2, 8)
        for _ in range(abs(ticks)):
            self.now += 0.05
            page.scroll(1 if ticks > 0 else -1)
            x, y = self.pointer
            self._feed([MouseScroll(self.now, rect.x + x, rect.y + y, 0, -1 if ticks > 0 else 1)])

    def _wait(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + 0.5)
            self._handle(self.pipeline.tick(self.now))

    def _feed(self, events: list[SourceEvent]) -> None:
        w = self.active
        d = self.decisions[w.window_id]
        for ev in events:
            self._handle(self.pipeline.feed(ev, d, w, ev.t))

    def _handle(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, BatchReady):
                self.batches.append(action.batch)
            elif isinstance(action, GrabRequest):
                w = action.window
                img = self.pages[w.window_id].view()
                t = action.t + 0.04
                frame = Frame(t, w.window_id, w.rect, W, H, img.tobytes())
                self._handle(self.pipeline.feed_frame(frame, self.decisions[w.window_id], t))


def fill_store(data: Path, device: Ed25519PrivateKey, items: list[tuple[Batch, bytes]]) -> None:
    now = int(T0 * 1000)
    storage = SQLiteStorage(StorageConfig(data_dir=data))
    try:
        token = hashlib.sha256(b"bench").digest()
        storage.add_enrollment_token(
            EnrollmentTokenRecord("tok", token, "acme", "office", now, now + 60_000, "bench"),
            AuditEvent(now, "bench", "enrollment_token.create", "tok"),
        )
        raw = device.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        storage.enroll_device(
            token,
            DEVICE,
            base64.b64encode(raw).decode(),
            "bench",
            now,
            AuditEvent(now, "bench", "device.enroll", DEVICE),
        )
        futures = []
        for batch, sealed in items:
            h = batch.header
            futures.append(
                storage.submit_batch(
                    BatchWrite(
                        device_id=h.device_id,
                        seq=h.seq,
                        batch_id=h.batch_id,
                        header=h.to_json(),
                        start_ms=h.start_ms,
                        end_ms=h.end_ms,
                        policy_version=h.policy_version,
                        sealed=sealed,
                        sha256=hashlib.sha256(sealed).digest(),
                        received_at_ms=now,
                    )
                )
            )
        for f in futures:
            f.result()
    finally:
        storage.close()


def timed(runs: int, fn: Callable[[int], object]) -> float:
    times = []
    for run in range(runs):
        start = time.perf_counter()
        fn(run)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------- --store: the command on a store


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def flat_png(width: int, height: int, shade: int = 0) -> bytes:
    """A 1-bit palette PNG of one colour: kB on disk, ``width x height x 4`` bytes decoded."""
    row = b"\x00" + bytes((width + 7) // 8)
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"PLTE", bytes([shade, shade, shade]))
        + _chunk(b"IDAT", data)
        + _chunk(b"IEND", b"")
    )


def _small_png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (shade, 200, 100)).save(buf, format="PNG")
    return buf.getvalue()


def _hand_body(manifest: dict[str, object], columns: bytes, *, sized: bool = True) -> bytes:
    mbytes = json.dumps(manifest).encode()
    section = struct.pack("<I", len(mbytes)) + mbytes + columns
    frame = zstandard.ZstdCompressor(level=9, write_content_size=sized).compress(section)
    return BODY_MAGIC + bytes([BODY_FORMAT]) + struct.pack("<I", len(frame)) + frame


def _shot(t: int, blob: bytes, w: int, h: int, base: str | None = None) -> ScreenshotRecord:
    if base is None:
        return ScreenshotRecord(t, ScreenshotKind.KEYFRAME, image_id(blob), w, h, w, h)
    return ScreenshotRecord(
        t, ScreenshotKind.DELTA, image_id(blob), w, h, w, h, base, 16, 1, ((0, 0),)
    )


def hostile_bodies(t0: int) -> dict[str, tuple[bytes, list[Record] | SignalCounts]]:
    """One body of each kind of attack, with the records (or counts) its header states."""
    ctx = ContextRecord(t0, "office-suite", "Q3", TitleState.KEPT, 0, 0, 64, 48, 1.0)
    click: list[Record] = [
        ClickRecord(t0 + 500, "left", True, 5, 5),
        ClickRecord(t0 + 580, "left", False, 5, 5),
    ]
    out: dict[str, tuple[bytes, list[Record] | SignalCounts]] = {}

    records: list[Record] = [ctx, *click]
    honest = encode_body(records, {})
    (n,) = struct.unpack_from("<I", honest, 5)
    section = zstandard.ZstdDecompressor().decompress(honest[9 : 9 + n])
    plain = zstandard.ZstdCompressor(level=9, write_content_size=False).compress(section)
    lying = plain[:4] + bytes([plain[4] | 0xC0]) + plain[5:6] + struct.pack("<Q", 16 << 30)
    frame = lying + plain[6:]
    out["zstd frame declaring 16 GiB"] = (
        BODY_MAGIC + bytes([BODY_FORMAT]) + struct.pack("<I", len(frame)) + frame,
        records,
    )

    def timings(count: int) -> bytes:
        t = bytes([0]) + bytes(count)
        pressed = bytes([0]) + bytes([1, 0]) * (count // 2) + bytes(count % 2)
        return bytes([0]) + bytes([6]) * count + t + pressed

    out["zstd frame without a size, past the limit"] = (
        _hand_body(
            {"records": 1, "strings": [], "images": []},
            timings(1) + bytes(MAX_SECTION_BYTES),
            sized=False,
        ),
        SignalCounts(key_timings=1),
    )
    out["2,000,000 records"] = (
        _hand_body({"records": 2_000_000, "strings": [], "images": []}, timings(2_000_000)),
        SignalCounts(key_timings=2_000_000),
    )
    records = [KeyTimingRecord(t0 + i // 2, i % 2 == 0) for i in range(MAX_RECORDS + 1)]
    out["one record over the limit"] = (encode_body(records, {}), records)
    records = [ctx, TextSpanRecord(t0 + 10, t0 + 20, "typed text " * 363_637, 0)]
    out["a 4,000,000-character text"] = (encode_body(records, {}), records)
    records, images = [dataclasses.replace(ctx, width=8192, height=8192)], {}
    for i in range(20):
        blob = flat_png(8192, 8192, i)
        images[image_id(blob)] = blob
        records += [_shot(t0 + 10 + i, blob, 8192, 8192)]
    records += click
    out["20 keyframes of 8192 x 8192"] = (encode_body(records, images), records)
    blob = flat_png(13_000, 13_000)
    records = [ctx, _shot(t0 + 10, blob, 64, 48), *click]
    out["a 13000 x 13000 PNG said to be 64 x 48"] = (
        encode_body(records, {image_id(blob): blob}),
        records,
    )
    base, tiles = _small_png(1), flat_png(13_000, 13_000)
    records = [ctx, _shot(t0 + 10, base, 64, 48), _shot(t0 + 20, tiles, 64, 48, image_id(base))]
    records += click
    out["a delta whose tiles image is 13000 x 13000"] = (
        encode_body(records, {image_id(base): base, image_id(tiles): tiles}),
        records,
    )
    blob = random.Random(1).randbytes(4096)
    records = [ctx, _shot(t0 + 10, blob, 64, 48), *click]
    out["an image of random bytes"] = (encode_body(records, {image_id(blob): blob}), records)
    records, images = [ctx], {}
    keys = []
    for i in range(9):
        blob = _small_png(10 + i)
        images[image_id(blob)] = blob
        keys.append(image_id(blob))
        records.append(_shot(t0 + 10 + i, blob, 64, 48))
    for i, key in enumerate(keys):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (i, 0, 0)).save(buf, format="PNG")
        tile = buf.getvalue()
        images[image_id(tile)] = tile
        records.append(_shot(t0 + 100 + i, tile, 64, 48, key))
    records += click
    out["nine delta chains held at once"] = (encode_body(records, images), records)
    return out


def _reheaded(header: BatchHeader, device_id: str, seq: int, body: bytes) -> BatchHeader:
    return dataclasses.replace(
        header,
        device_id=device_id,
        seq=seq,
        batch_id=hashlib.sha256(f"{device_id}/{seq}".encode()).hexdigest()[:32],
        body_size=len(body),
    )


def _hostile_header(
    template: BatchHeader, body: bytes, stated: list[Record] | SignalCounts
) -> BatchHeader:
    """The header a device would sign for a hostile body: it agrees with the body."""
    app_ids: tuple[str, ...] = ()
    if isinstance(stated, SignalCounts):
        counts, start, end = stated, template.start_ms, template.end_ms
    else:
        counts = count_signals(stated)
        app_ids = tuple(sorted({r.app_id for r in stated if isinstance(r, ContextRecord)}))
        start = min(r.t for r in stated)
        end = max(r.t for r in stated)
    return dataclasses.replace(
        template, counts=counts, app_ids=app_ids, start_ms=start, end_ms=end, body_size=len(body)
    )


def build_store(
    data: Path,
    pool: list[Batch],
    total: int,
    hostile_percent: float,
    dataset_key: X25519PrivateKey,
) -> tuple[int, int, int]:
    """A collector store of ``total`` batches: copies of ``pool`` under enough
    devices; every ``100 / hostile_percent``-th replaced by an attack.
    Returns (batches, hostile batches, sealed bytes)."""
    devices = -(-total // len(pool))
    keys = {f"{d:032x}": Ed25519PrivateKey.generate() for d in range(1, devices + 1)}
    attacks = list(hostile_bodies(pool[0].header.start_ms).items()) if hostile_percent else []
    every = round(100 / hostile_percent) if hostile_percent else 0
    now = int(T0 * 1000)
    storage = SQLiteStorage(StorageConfig(data_dir=data))
    hostile = sealed_bytes = 0
    try:
        for device_id, device in keys.items():
            token = hashlib.sha256(device_id.encode()).digest()
            storage.add_enrollment_token(
                EnrollmentTokenRecord(
                    device_id[-8:], token, "acme", "office", now, now + 60_000, "bench"
                ),
                AuditEvent(now, "bench", "enrollment_token.create", device_id[-8:]),
            )
            raw = device.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            storage.enroll_device(
                token,
                device_id,
                base64.b64encode(raw).decode(),
                "bench",
                now,
                AuditEvent(now, "bench", "device.enroll", device_id),
            )

        def items() -> Iterator[BatchWrite]:
            nonlocal hostile, sealed_bytes
            for n in range(total):
                device_id = f"{n // len(pool) + 1:032x}"
                source = pool[n % len(pool)]
                body = source.body
                header = _reheaded(source.header, device_id, source.header.seq, body)
                if every and n % every == every // 2:
                    _, (body, stated) = attacks[hostile % len(attacks)]
                    header = _hostile_header(header, body, stated)
                    hostile += 1
                sealed = seal_batch(
                    header.to_json(), body, dataset_key.public_key(), keys[device_id]
                )
                sealed_bytes += len(sealed)
                yield BatchWrite(
                    device_id=device_id,
                    seq=header.seq,
                    batch_id=header.batch_id,
                    header=header.to_json(),
                    start_ms=header.start_ms,
                    end_ms=header.end_ms,
                    policy_version=header.policy_version,
                    sealed=sealed,
                    sha256=hashlib.sha256(sealed).digest(),
                    received_at_ms=now,
                )

        futures = []
        for write in items():
            futures.append(storage.submit_batch(write))
            if len(futures) >= 256:
                for f in futures:
                    f.result()
                futures.clear()
        for f in futures:
            f.result()
    finally:
        storage.close()
    return total, hostile, sealed_bytes


#: Runs the command as its only child; prints its exit status, time and peak memory.
HARNESS = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - start
kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
json.dump({"rc": proc.returncode, "s": seconds, "kib": kib, "out": proc.stdout,
           "err": proc.stderr[-2000:]}, sys.stdout)
"""


def run_command(data: Path, key: Path, out: Path, jobs: int) -> dict[str, object]:
    command = [sys.executable, "-m", "overt", "export", "--data", str(data), "--key", str(key)]
    command += ["--out", str(out), "--jobs", str(jobs)]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", HARNESS, *command],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"overt export failed: {result['err']}")
    shutil.rmtree(out)
    return result


def store_main(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    pool = Workload(args.seed).run(min(args.pool, args.store))
    made = time.perf_counter() - start
    dataset_key = X25519PrivateKey.generate()
    where = Path(tempfile.mkdtemp(prefix="overt-bench-store-", dir=args.tmp))
    try:
        key = where / "dataset.key"
        key.write_bytes(
            dataset_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        print(f"machine:   {machine()}")
        print(
            f"pool:      {len(pool)} batches of the workload (seed {args.seed}, made in "
            f"{made:.0f} s), {sum(len(b.body) for b in pool) / len(pool) / 1e3:.0f} kB bodies"
        )
        for percent in args.hostile:
            data = where / f"store-{percent:g}"
            start = time.perf_counter()
            total, hostile, sealed = build_store(data, pool, args.store, percent, dataset_key)
            built = time.perf_counter() - start
            runs = [run_command(data, key, where / "out", args.jobs) for _ in range(args.runs)]
            seconds = [float(str(r["s"])) for r in runs]
            peaks = [int(str(r["kib"])) / 1024 for r in runs]
            last = str(runs[-1]["out"]).splitlines()
            exported = next(line for line in last if line.startswith("exported"))
            rejected = next(line.strip() for line in last if "rejected batches" in line)
            print(
                f"store:     {total} batches, {hostile} hostile ({percent:g} %), "
                f"{sealed / 1e6:.0f} MB sealed (built in {built:.0f} s)"
            )
            print(f"  {exported.split(', into')[0]}; {rejected}")
            print(
                f"  time {statistics.median(seconds):.1f} s (median of {args.runs}: "
                f"{', '.join(f'{x:.1f}' for x in seconds)}), "
                f"{sealed / 1e6 / statistics.median(seconds):.1f} MB/s"
            )
            print(
                f"  peak RSS {statistics.median(peaks):.0f} MiB (median; runs "
                f"{', '.join(f'{x:.0f}' for x in peaks)} MiB)"
            )
            shutil.rmtree(data)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--png-level", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--keep", type=Path, help="also leave the last dataset here")
    parser.add_argument("--store", type=int, default=0, help="the command on a store of N")
    parser.add_argument("--pool", type=int, default=200, help="distinct batches in the store")
    parser.add_argument(
        "--hostile",
        type=float,
        nargs="+",
        default=[0.0, 1.0],
        metavar="P",
        help="percent of hostile batches, one store each (default: 0 1)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="where to build the store")
    args = parser.parse_args()
    if args.store:
        store_main(args)
        return

    start = time.perf_counter()
    batches = Workload(args.seed).run(args.batches)
    dataset_key = X25519PrivateKey.generate()
    device = Ed25519PrivateKey.generate()
    sealed = [
        seal_batch(b.header.to_json(), b.body, dataset_key.public_key(), device) for b in batches
    ]
    made = time.perf_counter() - start
    items = [
        UnopenedBatch(b.header.device_id, b.header.seq, b.header.batch_id, device.public_key(), s)
        for b, s in zip(batches, sealed, strict=True)
    ]
    total = sum(len(s) for s in sealed)
    counts = [b.header.counts for b in batches]

    with tempfile.TemporaryDirectory(prefix="overt-bench-export-") as tmp:
        root = Path(tmp)
        summaries = []

        def core(jobs: int) -> Callable[[int], None]:
            def run(n: int) -> None:
                config = ExportConfig(
                    out=root / f"core-{jobs}-{n}", png_compress_level=args.png_level, jobs=jobs
                )
                summaries.append(export_batches(items, dataset_key, config))

            return run

        inline_s = timed(args.runs, core(0))
        core_s = timed(args.runs, core(args.jobs))
        open_s = timed(args.runs, lambda _: [open_batch(i, dataset_key) for i in items])
        data = root / "collector"
        fill_store(data, device, list(zip(batches, sealed, strict=True)))

        def store(run: int) -> None:
            source = open_store(data)
            try:
                config = ExportConfig(
                    out=root / f"store-{run}", png_compress_level=args.png_level, jobs=args.jobs
                )
                export_batches(source.batches(), dataset_key, config)
            finally:
                source.close()

        store_s = timed(args.runs, store)
        summary = summaries[-1]
        assert summary.out is not None
        out_bytes = sum(p.stat().st_size for p in summary.out.rglob("*") if p.is_file())
        if args.keep is not None:
            shutil.copytree(summary.out, args.keep)

    mb = total / 1e6
    print(f"machine:   {machine()}")
    print(
        f"workload:  {len(batches)} batches, {mb:.1f} MB sealed ({total / len(batches) / 1e3:.0f} "
        f"kB each), {sum(c.screenshots for c in counts)} screenshots, "
        f"{sum(c.clicks for c in counts)} clicks, {sum(c.text_spans for c in counts)} text spans "
        f"(made in {made:.1f} s, seed {args.seed})"
    )
    print(
        f"dataset:   {summary.actions} actions ({summary.actions_with_screenshot} with a "
        f"screenshot), {summary.frames} frames reassembled, {summary.images} PNG written "
        f"(level {args.png_level}), {summary.sessions} sessions, {out_bytes / 1e6:.1f} MB"
    )
    for label, seconds in ((f"jobs {args.jobs}", core_s), ("jobs 0", inline_s)):
        print(
            f"core:      {mb / seconds:.1f} MB/s  {label}  ({len(batches) / seconds:.0f} "
            f"batches/s, {summary.images / seconds:.0f} PNG/s, median of {args.runs}: "
            f"{seconds:.2f} s)"
        )
    print(f"open only: {mb / open_s:.1f} MB/s  (verify, decrypt, decode, validate: {open_s:.2f} s)")
    print(
        f"store:     {mb / store_s:.1f} MB/s  jobs {args.jobs}  (SQLite + blob segments: "
        f"{store_s:.2f} s)"
    )


if __name__ == "__main__":
    main()
