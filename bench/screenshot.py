"""Screenshot latency: from a grab request to encoded bytes, on a real X desktop.

Run:  .venv/bin/python bench/screenshot.py [--iterations N]

Target: median at most 30 ms at 1080p from trigger to encoded bytes.

What is timed is the path the agent runs for one screenshot request
(``GrabWorker._grab`` on the grab thread, then ``FrameEncoder.encode`` via
``Pipeline.feed_frame`` on the pipeline thread), called here back to back on
one thread:

    probe.active() → probe.visible_region(window) → grabber.grab(window, t)
    → probe.unchanged_since(visible) → keep_visible(frame, visible.rects)
    → encoder.encode(frame, settings)

with the real ``XorgWindowProbe``, ``MssScreenGrabber`` and ``FrameEncoder``,
for

- (i)   a keyframe (``force_keyframe()`` before each grab);
- (ii)  a small change: one character typed (xdotool) between grabs, so the
        encoder emits a tile delta;
- (iii) an unchanged window: the encoder skips the frame, so only the grab and
        the change detection are paid.

Windows: the work app (``tests/e2e/workapp.py``) with its editor filled with
about 8,000 characters of typed text, once at 1920x1080 (client area) on a
1920x1200 Xvfb screen, once at 1200x800. Settings: ``Screenshots(max_width=
1920, quality=50)`` (full size) and the default ``Screenshots()`` (max_width
1280: a 1080p window is downscaled).

Also measured in the same run:

- the baseline: the naive way, a grab of the same rectangle saved as PNG
  (Pillow defaults), and the ratio to the keyframe path;
- where the time goes: each stage's median, and Pillow's steps on the same
  frame alone (``frombytes``, the downscale, the WebP/JPEG encode);
- (i) through the agent's own thread hand-off: ``agent.grab_worker.GrabWorker`` and
  a pipeline thread looping as ``Agent._run`` does (``queue.get`` with the
  20 ms timeout while a grab is busy, then ``take``), with no input events.

The desktop (Xvfb + openbox, from ``tests.desktop``) is started and closed by
this script; it kills only the processes it started. Results go in
BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tests.desktop as harness
from agent.events import Rect, WindowInfo, subtract
from agent.pipeline.codecs import (
    LATENCY_TARGET_MS,
    WEBP,
    Codec,
    encode_image,
    frame_budget_ms,
    looks_like_screen,
)
from agent.pipeline.occlusion import keep_visible
from agent.pipeline.screens import FrameEncoder
from agent.sources._mss import MssScreenGrabber
from agent.sources._xorg import XorgWindowProbe
from agent.sources.input import EventQueue
from bench._machine import cpu_model
from policies.model import Screenshots

TARGET_MS = LATENCY_TARGET_MS
STAGES = ("active", "visible", "grab", "check", "keep", "encode")
FULL = Screenshots(max_width=1920, quality=50)
DEFAULT = Screenshots()

WORDS = " ".join(
    (
        "the invoice customer order ticket status owner review budget quarter report draft",
        "meeting agenda release branch merge deploy server latency queue retry policy window",
        "screen capture consent pause batch upload device key total amount net due paid",
    )
).split()


def text_lines(n: int, seed: int) -> list[str]:
    """Office-like lines of 150-250 characters: words, numbers, punctuation."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words: list[str] = []
        target = rng.randint(150, 250)
        while sum(len(w) + 1 for w in words) < target:
            word = rng.choice(WORDS)
            if rng.random() < 0.1:
                word = str(rng.randint(1, 99_999))
            if rng.random() < 0.08:
                word += rng.choice(",;:.")
            if rng.random() < 0.05:
                word = word.capitalize()
            words.append(word)
        lines.append(" ".join(words))
    return lines


# -- one request, timed -------------------------------------------------------------


@dataclass
class Case:
    """The samples of one scenario."""

    label: str
    total: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    sizes: list[int] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    frame_size: tuple[int, int] = (0, 0)
    image_size: tuple[int, int] = (0, 0)
    codecs: dict[str, int] = field(default_factory=dict)

    def add_kind(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def add_codec(self, data: bytes) -> None:
        codec = codec_of(data)
        self.codecs[codec] = self.codecs.get(codec, 0) + 1

    @property
    def codec(self) -> str:
        """The codec of most images (``WebP-LL``: lossless), or ``-``."""
        return max(self.codecs, key=lambda c: self.codecs[c]) if self.codecs else "-"


def codec_of(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP-LL" if b"VP8L" in data[12:40] else "WebP"
    if data[:2] == b"\xff\xd8":
        return "JPEG"
    return "?"


def request(
    probe: XorgWindowProbe,
    grabber: MssScreenGrabber,
    encoder: FrameEncoder,
    settings: Screenshots,
    window_id: int,
    case: Case,
) -> None:
    """One screenshot request, as ``GrabWorker._grab`` + ``FrameEncoder.encode`` run it."""
    pc = time.perf_counter
    t0 = pc()
    window = probe.active()
    t1 = pc()
    if window is None or window.window_id != window_id:
        raise RuntimeError(f"the work app lost focus (active: {window})")
    visible = probe.visible_region(window)
    t2 = pc()
    if visible is None:
        raise RuntimeError("the probe does not find the work app visible")
    frame = grabber.grab(window, time.time())
    t3 = pc()
    if frame is None:
        raise RuntimeError("the work app is not on a monitor")
    if not probe.unchanged_since(visible):
        # The agent throws such a frame away; so does the bench, and says so.
        case.add_kind("screen changed")
        return
    t4 = pc()
    frame = keep_visible(frame, visible.rects)
    t5 = pc()
    encoded = encoder.encode(frame, settings)
    t6 = pc()
    case.total.append((t6 - t0) * 1000)
    starts, ends = (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)
    for name, a, b in zip(STAGES, starts, ends, strict=True):
        case.stages[name].append((b - a) * 1000)
    case.frame_size = (frame.width, frame.height)
    if encoded is None:
        case.add_kind("skipped")
        return
    case.add_kind(str(encoded.record.kind))
    case.sizes.append(len(encoded.image))
    case.image_size = (encoded.record.width, encoded.record.height)
    case.add_codec(encoded.image)


def settle(grabber: MssScreenGrabber, window: WindowInfo, timeout: float = 5.0) -> None:
    """Wait until two grabs 100 ms apart are identical (the app has finished drawing)."""
    deadline = time.monotonic() + timeout
    previous = None
    while time.monotonic() < deadline:
        frame = grabber.grab(window, 0.0)
        rgb = frame.rgb if frame is not None else b""
        if rgb == previous:
            return
        previous = rgb
        time.sleep(0.1)
    raise TimeoutError("the window kept changing")


# -- scenarios ----------------------------------------------------------------------


@dataclass
class Window:
    """The work app on the bench desktop, ready to be grabbed."""

    desktop: harness.Desktop
    window_id: int
    probe: XorgWindowProbe
    grabber: MssScreenGrabber
    info: WindowInfo

    def type_char(self, char: str) -> None:
        self.desktop.xdotool("type", "--delay", "0", char)
        settle(self.grabber, self.info)


def keyframes(w: Window, settings: Screenshots, n: int, label: str) -> Case:
    case = Case(label)
    encoder = FrameEncoder()
    for _ in range(n):
        encoder.force_keyframe()
        request(w.probe, w.grabber, encoder, settings, w.window_id, case)
    return case


def deltas(w: Window, settings: Screenshots, n: int, label: str) -> Case:
    case = Case(label)
    encoder = FrameEncoder()
    request(w.probe, w.grabber, encoder, settings, w.window_id, Case("prime"))
    for i in range(n):
        w.type_char("abcdefghij"[i % 10])
        request(w.probe, w.grabber, encoder, settings, w.window_id, case)
    return case


def unchanged(w: Window, settings: Screenshots, n: int, label: str) -> Case:
    case = Case(label)
    encoder = FrameEncoder()
    request(w.probe, w.grabber, encoder, settings, w.window_id, Case("prime"))
    for _ in range(n):
        request(w.probe, w.grabber, encoder, settings, w.window_id, case)
    return case


def naive_png(w: Window, n: int, label: str) -> Case:
    """Baseline: grab the same rectangle and save it as PNG (Pillow defaults), nothing else."""
    from PIL import Image

    case = Case(label)
    pc = time.perf_counter
    for _ in range(n):
        t0 = pc()
        frame = w.grabber.grab(w.info, time.time())
        assert frame is not None
        buf = io.BytesIO()
        Image.frombytes("RGB", (frame.width, frame.height), frame.rgb).save(buf, format="PNG")
        t1 = pc()
        case.total.append((t1 - t0) * 1000)
        case.sizes.append(buf.tell())
        case.frame_size = case.image_size = (frame.width, frame.height)
        case.codecs["PNG"] = case.codecs.get("PNG", 0) + 1
        case.add_kind("png")
    return case


def pillow_steps(w: Window, n: int) -> list[tuple[str, float, int | None]]:
    """The steps of a keyframe on one frame, each alone: (label, median ms, bytes out)."""
    from PIL import Image

    from agent.sources._mss import _to_rgb

    frame = w.grabber.grab(w.info, time.time())
    assert frame is not None
    size = (frame.width, frame.height)
    img = Image.frombytes("RGB", size, frame.rgb)
    r = frame.rect
    box = {"left": r.x, "top": r.y, "width": r.width, "height": r.height}
    sct = w.grabber._sct()
    shot = sct.grab(box)

    def save(im: Image.Image, fmt: str, **options: int) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **options)
        return buf.getvalue()

    wh = f"{size[0]}x{size[1]}"
    steps: list[tuple[str, Callable[[], object]]] = [
        ("mss grab alone (XShm)", lambda: sct.grab(box)),
        ("BGRX to RGB alone (_to_rgb)", lambda: _to_rgb(shot)),
        ("Image.frombytes", lambda: Image.frombytes("RGB", size, frame.rgb)),
        (f"colour count (looks_like_screen), {wh}", lambda: looks_like_screen(img)),
        (
            f"encode_image lossless (effort 80, m2), {wh}",
            lambda: encode_image(img, 50, codec=Codec.LOSSLESS),
        ),
        (
            f"encode_image lossless fast (10, m1), {wh}",
            lambda: encode_image(img, 50, codec=Codec.LOSSLESS_FAST),
        ),
        (f"encode_image q50 (WebP m2), {wh}", lambda: encode_image(img, 50)),
        (f"  compare: WebP q50 method 0, {wh}", lambda: save(img, "WEBP", quality=50, method=0)),
        (f"  compare: JPEG q50, {wh}", lambda: save(img, "JPEG", quality=50)),
        (f"  compare: PNG (baseline's encode), {wh}", lambda: save(img, "PNG")),
    ]
    if frame.width > DEFAULT.max_width:
        h = round(frame.height * DEFAULT.max_width / frame.width)
        target = (DEFAULT.max_width, h)
        small = img.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0)
        steps += [
            (
                f"resize to {DEFAULT.max_width}x{h} (bilinear)",
                lambda: img.resize(target, Image.Resampling.BILINEAR, reducing_gap=2.0),
            ),
            (
                f"encode_image lossless fast (10, m1), {DEFAULT.max_width}x{h}",
                lambda: encode_image(small, 50, codec=Codec.LOSSLESS_FAST),
            ),
            (
                f"encode_image q50 (WebP m2), {DEFAULT.max_width}x{h}",
                lambda: encode_image(small, 50),
            ),
            (
                f"  compare: JPEG q50, {DEFAULT.max_width}x{h}",
                lambda: save(small, "JPEG", quality=50),
            ),
        ]
    covering = Rect(frame.rect.x + 100, frame.rect.y + 100, 600, 400)
    visible = subtract([frame.rect], covering)
    steps.append(("keep_visible, one 600x400 window above", lambda: keep_visible(frame, visible)))
    out: list[tuple[str, float, int | None]] = []
    for label, fn in steps:
        times = []
        result: object = None
        for _ in range(n):
            t0 = time.perf_counter()
            result = fn()
            times.append((time.perf_counter() - t0) * 1000)
        size_out = len(result) if isinstance(result, bytes) else None
        out.append((label, statistics.median(times), size_out))
    return out


def via_grab_worker(w: Window, settings: Screenshots, n: int, label: str) -> Case:
    """(i) through ``_GrabWorker`` and an ``Agent._run``-like pipeline thread.

    The pipeline thread requests a grab, then loops as ``Agent._run`` does:
    ``queue.get(timeout=...)``, which the worker's ``ready`` callback
    (``EventQueue.wake``) ends when the frame is there; then ``take()``, then
    encodes. Timed from the request to the encoded bytes.
    """
    from agent.app import _IDLE_WAKE_S
    from agent.grab_worker import GrabWorker as _GrabWorker

    case = Case(label)
    queue = EventQueue()
    worker = _GrabWorker(w.probe, w.grabber, time.time, ready=queue.wake)
    worker.start()
    encoder = FrameEncoder()
    target = w.info
    try:
        for _ in range(n):
            encoder.force_keyframe()
            t0 = time.perf_counter()
            worker.request(target)
            done = None
            deadline = time.monotonic() + 10
            while done is None:
                queue.get(timeout=_IDLE_WAKE_S)
                for frame, _window in worker.take():
                    done = encoder.encode(frame, settings)
                if done is None and time.monotonic() > deadline:
                    raise RuntimeError("the grab worker dropped the request")
            case.total.append((time.perf_counter() - t0) * 1000)
            case.sizes.append(len(done.image))
            case.add_kind(str(done.record.kind))
            case.add_codec(done.image)
            case.image_size = (done.record.width, done.record.height)
            case.frame_size = (done.record.source_width, done.record.source_height)
    finally:
        worker.stop()
    return case


# -- the desktop ----------------------------------------------------------------------


def open_window(
    desktop: harness.Desktop, x: int, y: int, width: int, height: int, lines: list[str]
) -> tuple[harness.AppWindow, Window]:
    app = desktop.launch_app(
        "tests.e2e.workapp",
        "overt-workapp",
        "--x",
        x,
        "--y",
        y,
        "--width",
        width,
        "--height",
        height,
        "--title",
        f"bench {width}x{height}",
    )
    desktop.xdotool("windowactivate", "--sync", app.window_id)
    # One xdotool call per line: Qt re-lays out a whole paragraph per key, so
    # typing everything as one paragraph is slow and xdotool outruns it.
    for i, line in enumerate(lines):
        prefix = ["key", "Return"] if i else []
        desktop.xdotool(*prefix, "type", "--delay", "0", line)
    probe = XorgWindowProbe(desktop.display)
    grabber = MssScreenGrabber()

    def focused() -> WindowInfo | None:
        active = probe.active()
        return active if active is not None and active.window_id == app.window_id else None

    info = harness.wait_for(focused, what="the work app to have focus")
    assert info is not None
    settle(grabber, info)
    return app, Window(desktop, app.window_id, probe, grabber, info)


def machine() -> list[str]:
    from importlib.metadata import version

    import PIL
    from PIL import features

    model = cpu_model()
    webp = f"WebP {features.version('webp')}" if features.check("webp") else "no WebP"
    turbo = "libjpeg-turbo" if features.check_feature("libjpeg_turbo") else "libjpeg"
    return [
        f"machine:  {model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"python:   {platform.python_version()} ({platform.python_implementation()}), "
        f"Pillow {PIL.__version__} ({webp}, {turbo} {features.version('jpg')}), "
        f"mss {version('mss')}, python-xlib {version('python-xlib')}",
        f"codec:    WebP lossless for screen content (lossy for photos) where the frame fits "
        f"what the {LATENCY_TARGET_MS:.0f} ms target leaves after the grab (1080p: "
        f"{frame_budget_ms(1920 * 1080):.1f} ms, 1200x800: {frame_budget_ms(1200 * 800):.1f} ms), "
        f"else a faster effort, lossy, JPEG"
        if WEBP
        else "codec:    JPEG (no WebP in this Pillow)",
    ]


# -- report -------------------------------------------------------------------------------


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]


def report(cases: list[Case], baseline: Case) -> list[str]:
    lines = [
        f"{'case':<44}{'frame':>11}{'image':>11}{'median':>9}{'p90':>9}"
        f"{'KiB':>8}  {'codec':<7} {'kinds'}"
    ]
    for case in [*cases, baseline]:
        size = f"{statistics.median(case.sizes) / 1024:.1f}" if case.sizes else "-"
        frame = "x".join(map(str, case.frame_size))
        image = "x".join(map(str, case.image_size)) if case.sizes else "-"
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(case.kinds.items()))
        if len(case.codecs) > 1:
            kinds += "; " + ", ".join(f"{k} {v}" for k, v in sorted(case.codecs.items()))
        lines.append(
            f"{case.label:<44}{frame:>11}{image:>11}{statistics.median(case.total):>9.1f}"
            f"{p90(case.total):>9.1f}{size:>8}  {case.codec:<7} {kinds}"
        )
    return lines


def stage_table(cases: list[Case]) -> list[str]:
    lines = [f"{'median ms per stage':<44}" + "".join(f"{s:>10}" for s in STAGES)]
    for case in cases:
        if not case.stages["active"]:
            continue
        cells = "".join(f"{statistics.median(case.stages[s]):>10.2f}" for s in STAGES)
        lines.append(f"{case.label:<44}{cells}")
    return lines


def run_window(
    desktop: harness.Desktop,
    geometry: tuple[int, int, int, int],
    lines: list[str],
    plans: list[tuple[str, Callable[[Window, int, str], Case]]],
    n: int,
) -> tuple[list[Case], Case, list[tuple[str, float, int | None]], tuple[int, int, int, int]]:
    app, w = open_window(desktop, *geometry, lines)
    try:
        client = desktop.client_geometry(app.window_id)
        cases = [plan(w, n, label) for label, plan in plans]
        baseline = naive_png(w, n, "baseline: grab + PNG of the same rectangle")
        steps = pillow_steps(w, n)
    finally:
        w.grabber.close()
        w.probe.close()
        desktop.kill(app.proc)
    return cases, baseline, steps, client


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30, help="requests per scenario")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    n = args.iterations
    lines = text_lines(48, args.seed)

    big: list[tuple[str, Callable[[Window, int, str], Case]]] = [
        ("(i) keyframe, max_width 1920", lambda w, n, lb: keyframes(w, FULL, n, lb)),
        ("(i) keyframe, max_width 1280 (default)", lambda w, n, lb: keyframes(w, DEFAULT, n, lb)),
        ("(ii) one char typed, max_width 1920", lambda w, n, lb: deltas(w, FULL, n, lb)),
        ("(ii) one char typed, max_width 1280", lambda w, n, lb: deltas(w, DEFAULT, n, lb)),
        ("(iii) unchanged, max_width 1920", lambda w, n, lb: unchanged(w, FULL, n, lb)),
        ("(iii) unchanged, max_width 1280", lambda w, n, lb: unchanged(w, DEFAULT, n, lb)),
        (
            "(i) 1920, via _GrabWorker + Agent._run wake",
            lambda w, n, lb: via_grab_worker(w, FULL, n, lb),
        ),
    ]
    small: list[tuple[str, Callable[[Window, int, str], Case]]] = [
        ("(i) keyframe, default settings", lambda w, n, lb: keyframes(w, DEFAULT, n, lb)),
        ("(ii) one char typed, default settings", lambda w, n, lb: deltas(w, DEFAULT, n, lb)),
        ("(iii) unchanged, default settings", lambda w, n, lb: unchanged(w, DEFAULT, n, lb)),
        (
            "(i) via _GrabWorker + Agent._run wake",
            lambda w, n, lb: via_grab_worker(w, DEFAULT, n, lb),
        ),
    ]

    # A screen taller than 1080, so a 1920x1080 client area fits with its frame.
    harness.SCREEN_WIDTH, harness.SCREEN_HEIGHT = 1920, 1200
    desktop = harness.start_desktop()
    try:
        with harness.display_env(desktop.display):
            print("\n".join(machine()))
            print(f"desktop:  Xvfb {desktop.display} 1920x1200 + openbox (tests.desktop)")
            print(f"content:  work app editor with {sum(map(len, lines)):,} typed characters")
            results = [
                ("1080p", run_window(desktop, (0, 0, 1920, 1080), lines, big, n)),
                ("1200x800", run_window(desktop, (200, 150, 1200, 800), lines, small, n)),
            ]
    finally:
        desktop.close()

    verdicts = []
    for name, (cases, baseline, steps, client) in results:
        print()
        print(
            f"== work app, {name}: client area {client[2]}x{client[3]} at {client[0]},{client[1]}"
        )
        print(f"trigger to encoded bytes, ms over {n} requests each")
        print("\n".join(report(cases, baseline)))
        key = cases[0]
        ratio = statistics.median(baseline.total) / statistics.median(key.total)
        print(f"  baseline / {key.label}: {ratio:.2f}x")
        print()
        print("\n".join(stage_table(cases)))
        print()
        print("steps on one frame, each alone (median of the same number of runs):")
        for label, ms, nbytes in steps:
            kib = f"{nbytes / 1024:8.1f} KiB" if nbytes is not None else ""
            print(f"  {label:<46}{ms:>8.2f} ms{kib}")
        med = statistics.median(key.total)
        word = "meets" if med <= TARGET_MS else "MISSES"
        verdicts.append(
            f"  {name} {key.label}: median {med:.1f} ms {word} the {TARGET_MS:.0f} ms target"
        )
    print()
    print(f"verdict (target: median <= {TARGET_MS:.0f} ms at 1080p):")
    print("\n".join(verdicts))
    print(f"command:  .venv/bin/python bench/screenshot.py --iterations {n} --seed {args.seed}")


if __name__ == "__main__":
    main()
