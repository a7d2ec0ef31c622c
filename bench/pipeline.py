"""Pipeline throughput on one core: gate, minimise and batch a recorded-like mix.

Run:  .venv/bin/python bench/pipeline.py [--seconds S] [--runs R]
                                          [--pointer reach|jitter] [--hz HZ]

The workload is generated from a fixed seed and imitates a person at work:
pointer movements towards targets, clicks, drags, scroll bursts, typing at
about 8 keys/s with backspaces and the odd shortcut, pauses, and a focus
switch every few actions between an editor (keys as text), a browser
(shortcuts) and a terminal (timing). The pointer moves as a hand does
(``--pointer reach``, the default: minimum-jerk reaches with a little tremor,
reported at ``--hz``, see :func:`reach`), or as the first version of this
benchmark moved it (``--pointer jitter``: ±1 px of fresh random noise on
every 1 kHz sample, which no pointer shows and which keeps simplification
from dropping samples). Every event goes through
``DecisionEngine.decide_window`` (the gate) and ``Pipeline.feed`` (minimise +
batch, including encoding and compressing the batch bodies); screenshots
are not grabbed (frame encoding runs on a worker and is measured in
headless-desktop.md).

Reports the median events/s of several runs, how many records and batches
came out, and the bytes each kept mouse sample costs after compression
(paths encoded alone, batch by batch and all in one, and what they add to
the batches they were sent in).
Results go in BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import base64
import math
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.events import (
    AppIdentity,
    FocusChange,
    KeyEvent,
    MouseButton,
    MouseMove,
    MouseScroll,
    Rect,
    SourceEvent,
    WindowInfo,
)
from agent.pipeline.batcher import Batcher
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import CaptureState, DecisionEngine
from agent.pipeline.pipeline import BatchReady, Pipeline
from bench._machine import machine
from bench._pointer import PathTap, summary
from overt.wire.batch import Batch
from overt.wire.body import decode_body, encode_body
from overt.wire.records import MousePathRecord, Record
from policies.model import (
    AppMatch,
    AppRule,
    CaptureSettings,
    DatasetKey,
    KeyMode,
    Notice,
    Policy,
    Retention,
    Scope,
)

T0 = 1_800_000_000.0

WINDOWS = [
    WindowInfo(
        11,
        AppIdentity("code", "code", "Code", "code"),
        "pipeline.py - overt - Visual Studio Code",
        Rect(0, 0, 1280, 1000),
    ),
    WindowInfo(
        12,
        AppIdentity("firefox", "Navigator", "firefox", "firefox"),
        "Tickets - Mozilla Firefox",
        Rect(200, 100, 1400, 900),
    ),
    WindowInfo(
        13,
        AppIdentity("gnome-terminal-", "gnome-terminal-server", "Gnome-terminal"),
        "~/src",
        Rect(600, 300, 900, 600),
    ),
]


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def build_state() -> CaptureState:
    apps = (
        AppRule(
            id="editor",
            name="Editor",
            match=AppMatch(wm_classes=("Code",)),
            capture=CaptureSettings(keystrokes=KeyMode.TEXT),
        ),
        AppRule(id="browser", name="Browser", match=AppMatch(process_names=("firefox",))),
        AppRule(
            id="terminal",
            name="Terminal",
            match=AppMatch(wm_classes=("gnome-terminal-server",)),
            capture=CaptureSettings(keystrokes=KeyMode.TIMING),
        ),
    )
    policy = Policy(
        version=3,
        issued_at=_at(T0 - 86_400),
        expires=_at(T0 + 7 * 86_400),
        scope=Scope(tenant="acme", device_groups=("*",)),
        notice=Notice(organisation="Acme", contact="privacy@acme.example"),
        dataset_key=DatasetKey(key_id="ds-1", public_key=base64.b64encode(b"k" * 32).decode()),
        apps=apps,
        retention=Retention(days=90, readers=("the data team",)),
    )
    return CaptureState.build(
        policy, consent=ConsentRecord.accept(policy, T0 - 3600), self_test_passed=True
    )


Timed = tuple[SourceEvent, WindowInfo]


Sample = tuple[float, int, int]  # (seconds from the start of a movement, x, y)


def reach(
    rng: random.Random, x0: int, y0: int, x1: int, y1: int, *, hz: float, width: float = 20.0
) -> list[Sample]:
    """One reaching movement of a hand on a mouse, sampled like a pointer device.

    The hand follows a minimum-jerk profile (Flash & Hogan 1985:
    ``s = 10τ³ - 15τ⁴ + 6τ⁵``) over a Fitts'-law duration (0.10 s + 0.11 s per
    bit of ``log2(distance / width + 1)``, times 0.8-1.25), bowed sideways by
    a few percent of the distance, with an 8-12 Hz tremor of 0.2-0.5 px and
    0.15 px of sensor noise across the direction of travel. Reports come at
    ``hz`` with ±20 % jitter, at integer pixels, only when the position
    changed (as X delivers motion); the last one is exactly the target.
    """
    dist = math.dist((x0, y0), (x1, y1))
    if dist < 1:
        return []
    duration = (0.10 + 0.11 * math.log2(dist / width + 1)) * rng.uniform(0.8, 1.25)
    bow = rng.gauss(0, 0.06) * dist
    nx, ny = -(y1 - y0) / dist, (x1 - x0) / dist
    tremor_hz, tremor_px = rng.uniform(8, 12), rng.uniform(0.2, 0.5)
    phase = rng.uniform(0, 2 * math.pi)
    out: list[Sample] = []
    last = (x0, y0)
    step = 0
    while True:
        step += 1
        t = (step + rng.uniform(-0.2, 0.2)) / hz
        tau = min(1.0, t / duration)
        if tau >= 1.0:
            x, y = x1, y1
        else:
            s = tau**3 * (10 - 15 * tau + 6 * tau * tau)
            side = bow * math.sin(math.pi * tau)
            side += tremor_px * math.sin(2 * math.pi * tremor_hz * t + phase)
            x = round(x0 + (x1 - x0) * s + nx * side + rng.gauss(0, 0.15))
            y = round(y0 + (y1 - y0) * s + ny * side + rng.gauss(0, 0.15))
        if (x, y) != last:
            out.append((t, x, y))
            last = (x, y)
        if tau >= 1.0:
            return out


def hand_path(
    rng: random.Random, x0: int, y0: int, x1: int, y1: int, *, hz: float, width: float = 20.0
) -> list[Sample]:
    """A movement to a target as people make it: one reach, or (a third of the
    longer ones) a reach that stops short and a corrective sub-movement after
    40-150 ms."""
    if rng.random() < 0.35 and math.dist((x0, y0), (x1, y1)) > 150:
        f = rng.uniform(0.85, 0.96)
        mx, my = round(x0 + (x1 - x0) * f), round(y0 + (y1 - y0) * f)
        first = reach(rng, x0, y0, mx, my, hz=hz, width=width * 3)
        t0 = (first[-1][0] if first else 0.0) + rng.uniform(0.04, 0.15)
        return first + [(t0 + t, x, y) for t, x, y in reach(rng, mx, my, x1, y1, hz=hz)]
    return reach(rng, x0, y0, x1, y1, hz=hz, width=width)


WORKLOADS = ("reach", "jitter")


def build_workload(
    seconds: float, seed: int = 3, *, pointer: str = "reach", hz: float = 1000.0
) -> list[Timed]:
    """The fixed workload. ``pointer`` says how the pointer moves between targets:
    ``reach`` — :func:`hand_path` at ``hz``; ``jitter`` — the first version of
    this benchmark: an ease-in-out line at 1 kHz with ±1 px of independent
    random jitter added to both coordinates of every sample, which a real
    pointer does not do and which simplification cannot remove."""
    if pointer not in WORKLOADS:
        raise ValueError(f"unknown pointer workload {pointer!r}")
    rng = random.Random(seed)
    out: list[Timed] = []
    t = T0
    win = WINDOWS[0]
    x, y = 400, 300
    out.append((FocusChange(t, win), win))
    end = T0 + seconds

    def move_to(tx: int, ty: int, duration: float) -> None:
        nonlocal t, x, y
        if pointer == "reach":
            start = t
            for dt, mx, my in hand_path(rng, x, y, tx, ty, hz=hz):
                t = start + dt
                out.append((MouseMove(t, mx, my), win))
            x, y = tx, ty
            return
        n = max(1, int(duration * 1000))
        x0, y0 = x, y
        for i in range(1, n + 1):
            f = i / n
            f = f * f * (3 - 2 * f)  # ease in and out
            x = round(x0 + (tx - x0) * f) + rng.choice((-1, 0, 0, 1))
            y = round(y0 + (ty - y0) * f) + rng.choice((-1, 0, 0, 1))
            t += 0.001
            out.append((MouseMove(t, x, y), win))

    def target() -> tuple[int, int]:
        r = win.rect
        return r.x + rng.randrange(r.width), r.y + rng.randrange(r.height)

    while t < end:
        action = rng.random()
        if action < 0.08:
            win = rng.choice(WINDOWS)
            t += 0.2
            out.append((FocusChange(t, win), win))
        move_to(*target(), rng.uniform(0.3, 2.0))
        t += rng.uniform(0.02, 0.3)  # dwell
        out.append((MouseButton(t, x, y, "left", True), win))
        if rng.random() < 0.15:  # a drag
            move_to(*target(), rng.uniform(0.3, 1.0))
        t += 0.08
        out.append((MouseButton(t, x, y, "left", False), win))
        if rng.random() < 0.2:  # a scroll burst
            for _ in range(rng.randrange(3, 15)):
                t += 0.03
                out.append((MouseScroll(t, x, y, 0, rng.choice((-1, 1))), win))
        for _ in range(rng.randrange(0, 40)):  # typing
            t += rng.uniform(0.06, 0.25)
            if rng.random() < 0.05:
                key, ch = "backspace", None
            else:
                ch = rng.choice("abcdefghijklmnopqrstuvwxyz     ,.0123456789")
                key = "space" if ch == " " else ch
            out.append((KeyEvent(t, key, True, ch), win))
            out.append((KeyEvent(t + 0.05, key, False, ch), win))
        if rng.random() < 0.1:
            t += 0.3
            for ev in (
                KeyEvent(t, "ctrl", True),
                KeyEvent(t + 0.1, "s", True, "\x13"),
                KeyEvent(t + 0.15, "s", False, "\x13"),
                KeyEvent(t + 0.2, "ctrl", False),
            ):
                out.append((ev, win))
            t += 0.2
        t += rng.uniform(0.1, 3.0)  # reading
    return out


def run(state: CaptureState, events: list[Timed]) -> tuple[float, list[Batch]]:
    engine = DecisionEngine(state)
    batcher = Batcher(device_id="bench", policy_version=3, dataset_key_id="ds-1")
    assert state.policy is not None
    pipeline = Pipeline(redaction=state.policy.policy.redaction, batcher=batcher)
    decide = engine.decide_window
    feed = pipeline.feed
    batches: list[Batch] = []
    start = time.perf_counter()
    for ev, win in events:
        now = ev.t
        for action in feed(ev, decide(win, now), win, now):
            if type(action) is BatchReady:
                batches.append(action.batch)
    batches += pipeline.flush(events[-1][0].t + 1)
    return time.perf_counter() - start, batches


def mouse_bytes_per_sample(paths_by_batch: list[list[MousePathRecord]]) -> tuple[float, float]:
    """What a kept mouse sample costs in a batch body, after compression.

    The paths are encoded alone with ``encode_body`` and the size of an empty
    body is taken off; the result is divided by the samples they keep. Once
    with all paths in one body, once batch by batch (what was really sent:
    each batch pays for its own compression tables). The figure of the
    target (2 bytes) is the batch-by-batch one.
    """
    empty = len(encode_body([], {}))
    samples = max(1, sum(p.samples for paths in paths_by_batch for p in paths))
    together = [p for paths in paths_by_batch for p in paths]
    all_in_one = (len(encode_body(together, {})) - empty) / samples
    per_batch = sum(len(encode_body(paths, {})) - empty for paths in paths_by_batch) / samples
    return all_in_one, per_batch


def mouse_bytes_in_batches(records_by_batch: list[list[Record]]) -> float:
    """What a kept mouse sample adds to the batches it was sent in: each batch's
    records encoded with and without their paths (image blobs left out), the
    difference summed over the batches and divided by the samples kept. Paths
    share the body with everything else, so this is what they really cost."""
    grown = samples = 0
    for records in records_by_batch:
        others = [r for r in records if not isinstance(r, MousePathRecord)]
        grown += len(encode_body(records, {})) - len(encode_body(others, {}))
        samples += sum(r.samples for r in records if isinstance(r, MousePathRecord))
    return grown / max(1, samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="simulated activity")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--pointer", choices=WORKLOADS, default="reach", help="how the pointer moves (see above)"
    )
    parser.add_argument("--hz", type=float, default=1000.0, help="pointer report rate (reach)")
    args = parser.parse_args()
    state = build_state()
    events = build_workload(args.seconds, pointer=args.pointer, hz=args.hz)
    times: list[float] = []
    batches: list[Batch] = []
    for _ in range(args.runs):
        elapsed, batches = run(state, events)
        times.append(elapsed)
    rate = len(events) / statistics.median(times)

    records_by_batch = [decode_body(b.body)[0] for b in batches]
    records = [r for batch in records_by_batch for r in batch]
    in_batches = mouse_bytes_in_batches(records_by_batch)
    paths = [r for r in records if isinstance(r, MousePathRecord)]
    samples = sum(p.samples for p in paths)
    moves = sum(1 for ev, _ in events if type(ev) is MouseMove)
    per_sample, per_batch = mouse_bytes_per_sample(
        [[r for r in decode_body(b.body)[0] if isinstance(r, MousePathRecord)] for b in batches]
    )
    body_bytes = sum(len(b.body) for b in batches)
    kinds: dict[str, int] = {}
    for r in records:
        kinds[type(r).__name__] = kinds.get(type(r).__name__, 0) + 1

    print(f"machine:   {machine()}")
    print(
        f"workload:  {len(events):,} events over {args.seconds:.0f} s of simulated activity "
        f"({moves:,} pointer moves, {args.pointer}"
        f"{f' at {args.hz:g} Hz' if args.pointer == 'reach' else ' at 1 kHz'})"
    )
    print(
        f"pipeline:  {rate:,.0f} events/s, {1e6 / rate:.2f} µs/event through gate + minimise "
        f"+ batch (median of {args.runs} runs, one core)"
    )
    print(
        f"output:    {len(records):,} records in {len(batches)} batches, {body_bytes:,} body bytes"
    )
    print(f"records:   {dict(sorted(kinds.items()))}")
    print(
        f"mouse:     {len(paths):,} paths keeping {samples:,} of {moves:,} samples; "
        f"{per_sample:.2f} bytes per kept sample after zstd (all paths in one body, less an "
        f"empty body); {per_batch:.2f} within the run's own batches, "
        f"{per_batch * samples:,.0f} bytes in all ({per_batch * samples / max(1, moves):.3f} "
        f"per pointer move seen); {in_batches:.2f} added to the batches with everything else"
    )
    tap = PathTap()
    with tap.watching():  # one more run, untimed, watching what the coalescer keeps
        _, watched = run(state, events)
    watched_paths = [
        [r for r in decode_body(b.body)[0] if isinstance(r, MousePathRecord)] for b in watched
    ]
    _, rdp_per_batch = mouse_bytes_per_sample(tap.as_rdp(watched_paths))
    for line in summary(tap, watched_paths, per_batch, rdp_per_batch):
        print(line)


if __name__ == "__main__":
    main()
