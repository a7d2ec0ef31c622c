"""Pipeline throughput on one core: gate, minimise and batch a recorded-like mix.

Run:  .venv/bin/python bench/pipeline.py [--seconds S] [--runs R]

The workload is generated from a fixed seed and imitates a person at work:
1 kHz pointer bursts (0.3-2 s of movement towards a target, with hand
tremble), clicks, drags, scroll bursts, typing at about 8 keys/s with
backspaces and the odd shortcut, pauses, and a focus switch every few actions
between an editor (keys as text), a browser (shortcuts) and a terminal
(timing). Every event goes through ``DecisionEngine.decide_window`` (the
gate) and ``Pipeline.feed`` (minimise + batch, including encoding and
compressing the batch bodies); screenshots are not grabbed (frame encoding
runs on a worker and is measured in headless-desktop.md).

Reports the median events/s of several runs, how many records and batches
came out, and the bytes each kept mouse sample costs after compression.
Results go in BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
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
from agent.pipeline.batch import Batch, Batcher, decode_body, encode_body
from agent.pipeline.consent import ConsentRecord
from agent.pipeline.decision import CaptureState, DecisionEngine
from agent.pipeline.pipeline import BatchReady, Pipeline
from agent.pipeline.records import MousePathRecord, Record
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


def build_workload(seconds: float, seed: int = 3) -> list[Timed]:
    rng = random.Random(seed)
    out: list[Timed] = []
    t = T0
    win = WINDOWS[0]
    x, y = 400, 300
    out.append((FocusChange(t, win), win))
    end = T0 + seconds

    def move_to(tx: int, ty: int, duration: float) -> None:
        nonlocal t, x, y
        n = max(1, int(duration * 1000))
        x0, y0 = x, y
        for i in range(1, n + 1):
            f = i / n
            f = f * f * (3 - 2 * f)  # ease in and out, like a hand
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


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="simulated activity")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    state = build_state()
    events = build_workload(args.seconds)
    times: list[float] = []
    batches: list[Batch] = []
    for _ in range(args.runs):
        elapsed, batches = run(state, events)
        times.append(elapsed)
    rate = len(events) / statistics.median(times)

    records: list[Record] = []
    for b in batches:
        records += decode_body(b.body)[0]
    paths = [r for r in records if isinstance(r, MousePathRecord)]
    samples = sum(p.samples for p in paths)
    moves = sum(1 for ev, _ in events if type(ev) is MouseMove)
    empty_body = len(encode_body([], {}))
    per_sample = (len(encode_body(paths, {})) - empty_body) / max(1, samples)
    # The same, batch by batch: what the paths of each real batch cost.
    per_batch = sum(
        len(encode_body([r for r in decode_body(b.body)[0] if isinstance(r, MousePathRecord)], {}))
        - empty_body
        for b in batches
    ) / max(1, samples)
    body_bytes = sum(len(b.body) for b in batches)
    kinds: dict[str, int] = {}
    for r in records:
        kinds[type(r).__name__] = kinds.get(type(r).__name__, 0) + 1

    print(f"machine:   {machine()}")
    print(
        f"workload:  {len(events):,} events over {args.seconds:.0f} s of simulated activity "
        f"({moves:,} pointer moves at 1 kHz)"
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
        f"empty body); {per_batch:.2f} within the run's own batches"
    )


if __name__ == "__main__":
    main()
