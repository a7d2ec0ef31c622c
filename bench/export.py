"""Export throughput: MB/s of stored (sealed) batches turned into a dataset.

Run:  .venv/bin/python bench/export.py [--batches N] [--runs R] [--seed S]
                                        [--png-level L] [--jobs J] [--keep DIR]

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
sealed with ``policies.sealed.seal_batch`` under keys generated per run.

Measured, each the median of ``--runs``:

- **core**: :func:`overt.export.export_batches` over the batches in memory
  into a new directory on the same disk as the temporary directory
  (verify, decrypt, decode, validate, reassemble every frame, PNG-encode the
  frames actions refer to, write and fsync), with the PNG frames compressed
  on the calling thread (``jobs 0``) and on ``--jobs`` threads (the
  command's default: the cores, at most 4);
- **open only**: the trust step alone (:func:`overt._export_open.open_batch`
  on every batch), to show where the time goes;
- **store**: the command's own path, ``open_store`` on a collector data
  directory (``collector.sqlite_store.SQLiteStorage``) filled with the same
  batches, then ``export_batches`` over ``CollectorStore.batches()`` with
  ``--jobs`` threads.

MB are 10^6 bytes of sealed batches as stored. Results go in BENCHMARKS.md
by hand.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from agent.pipeline.batch import Batch, Batcher
from agent.pipeline.decision import Decision, Reason
from agent.pipeline.pipeline import Action, BatchReady, Pipeline
from agent.pipeline.screens import GrabRequest
from bench._machine import machine
from collector.config import StorageConfig
from collector.sqlite_store import SQLiteStorage
from collector.storage import AuditEvent, BatchWrite, EnrollmentTokenRecord
from overt._export_open import open_batch
from overt.export import ExportConfig, StoredBatch, export_batches, open_store
from policies.model import KeyMode, Redaction, Screenshots, TitleAction
from policies.sealed import seal_batch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--png-level", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--keep", type=Path, help="also leave the last dataset here")
    args = parser.parse_args()

    start = time.perf_counter()
    batches = Workload(args.seed).run(args.batches)
    dataset_key = X25519PrivateKey.generate()
    device = Ed25519PrivateKey.generate()
    sealed = [
        seal_batch(b.header.to_json(), b.body, dataset_key.public_key(), device) for b in batches
    ]
    made = time.perf_counter() - start
    items = [
        StoredBatch(b.header.device_id, b.header.seq, b.header.batch_id, device.public_key(), s)
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
