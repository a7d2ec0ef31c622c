"""Input hook callbacks: time from callback entry until the event is queued.

Run:  .venv/bin/python bench/input_callback.py [--calls N] [--rates HZ,HZ] [--runs R]

Target: p99 at most 50 µs from the entry of a ``PynputHooks`` callback
(``on_move``, ``on_click``, ``on_scroll``, ``on_press``, ``on_release``) to its
return after ``EventQueue.put_raw``. A callback runs on pynput's listener
thread; while it runs, the X RECORD stream is not read.

Every call is timed by the same thin shim, ``t0 = perf_counter_ns(); cb(*args);
out.append(perf_counter_ns() - t0)``. The baseline is an empty callback behind
that shim (its figures are the shim's own overhead), measured in the same run;
the "timer floor" row is two back-to-back ``perf_counter_ns`` calls.

Two ways, both with an agent-like consumer on another thread (``get`` with a
timeout, then ``drain``, as ``Agent._run`` does), so queue-lock and GIL
contention are part of the figures, and with the garbage collector enabled:

(a) direct calls of the callbacks ``PynputHooks`` hands to pynput (built by
    ``_mouse_callbacks`` / ``_key_callbacks``) with synthetic pynput arguments
    (``Button``, ``Key``, ``KeyCode``): a fixed-seed mix of mostly moves, some
    clicks and scrolls, key presses and releases of printable and special
    keys. "paced" calls them in bursts of 20 with a 0.2 ms sleep between
    bursts (a RECORD reply can carry several events), so the consumer keeps
    up and is often waiting; "back-to-back" calls them in one tight loop, so
    the producer and the consumer fight for the GIL and the queue fills up.
(b) the real listeners: ``PynputHooks.start`` on a private Xvfb, with each
    callback wrapped in the shim, fed by XTEST input (python-xlib
    ``fake_input``) from a separate process at each of ``--rates`` events/s
    (1000/s is a common mouse report rate). At the first rate it also runs
    the real callbacks with a consumer that polls every 10 ms instead of
    waiting on the queue, to show what the wake-up of a waiting consumer
    costs the hook thread (a comparison, not what the agent does).

The desktop (Xvfb + openbox, from ``tests.desktop``) is started and closed
by this script; it kills only the processes it started. Results go in
BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.sources import _pynput
from agent.sources._pynput import PynputHooks
from agent.sources.input import EventQueue
from bench._machine import cpu_model
from tests.desktop import display_env, start_desktop, wait_for

TARGET_P99_US = 50.0
NAMES = ("on_move", "on_click", "on_scroll", "on_press", "on_release")
Callback = Callable[..., None]


# -- timing ------------------------------------------------------------------


def timed(fn: Callback, out: array[int]) -> Callback:
    """``fn`` behind the timing shim: each call's entry-to-return time goes to ``out``."""
    ns = time.perf_counter_ns
    append = out.append

    def shim(*args: Any) -> None:
        t0 = ns()
        fn(*args)
        append(ns() - t0)

    return shim


def empty(*_: Any) -> None:
    """The baseline callback: nothing but the shim around it."""


def timer_floor(n: int) -> array[int]:
    ns = time.perf_counter_ns
    out = array("q")
    append = out.append
    for _ in range(n):
        t0 = ns()
        append(ns() - t0)
    return out


def percentile(sorted_ns: list[int], p: float) -> float:
    """Nearest-rank percentile, in µs."""
    if not sorted_ns:
        return float("nan")
    rank = max(1, -(-len(sorted_ns) * p // 100))
    return sorted_ns[int(rank) - 1] / 1000


STATS = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def summarise(samples: array[int]) -> dict[str, float]:
    s = sorted(samples)
    out = {name: percentile(s, p) for name, p in STATS}
    out["max"] = s[-1] / 1000 if s else float("nan")
    out["n"] = len(s)
    return out


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median of each statistic over runs; ``max`` is the worst of all runs."""
    out = {name: statistics.median(r[name] for r in runs) for name, _ in STATS}
    out["max"] = max(r["max"] for r in runs)
    out["n"] = sum(r["n"] for r in runs)
    return out


# -- the consumer, as in Agent._run ----------------------------------------------


@contextlib.contextmanager
def consumer(queue: EventQueue, poll: float | None = None) -> Iterator[list[int]]:
    """A thread taking events off ``queue``; yields a one-item list: events taken.

    With ``poll=None`` it works as the agent's pipeline thread does
    (``get(timeout)``, then ``drain``): it waits on the queue's condition, so
    a put into an empty queue wakes it. With ``poll=s`` it sleeps ``s``
    seconds between drains and never waits on the queue (a comparison only;
    not what the agent does).
    """
    stop = threading.Event()
    seen = [0]

    def run() -> None:
        while not stop.is_set():
            if poll is not None:
                time.sleep(poll)
                seen[0] += len(queue.drain())
                continue
            event = queue.get(timeout=0.5)
            if event is not None:
                seen[0] += 1 + len(queue.drain())

    thread = threading.Thread(target=run, name="bench-consumer", daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)
        seen[0] += len(queue.drain())


# -- (a) direct calls ----------------------------------------------------------------


def synthetic_calls(n: int, seed: int) -> list[tuple[str, tuple[Any, ...]]]:
    """A fixed-seed mix of pynput callback calls, arguments as pynput passes them."""
    from pynput.keyboard import Key, KeyCode
    from pynput.mouse import Button

    rng = random.Random(seed)
    printable = [KeyCode.from_char(c) for c in "abcdefghijklmnopqrstuvwxyz0123456789 .,"]
    special = [Key.shift, Key.ctrl_l, Key.enter, Key.backspace, Key.left, Key.tab, Key.esc]
    calls: list[tuple[str, tuple[Any, ...]]] = []
    x, y = 500, 400
    while len(calls) < n:
        r = rng.random()
        if r < 0.85:
            x = min(1919, max(0, x + rng.randint(-8, 8)))
            y = min(1079, max(0, y + rng.randint(-8, 8)))
            calls.append(("on_move", (x, y, False)))
        elif r < 0.88:
            button = Button.left if rng.random() < 0.8 else Button.right
            calls.append(("on_click", (x, y, button, True, False)))
            calls.append(("on_click", (x, y, button, False, False)))
        elif r < 0.90:
            calls.append(("on_scroll", (x, y, 0, rng.choice((-1, 1)), False)))
        else:
            key = rng.choice(printable) if rng.random() < 0.7 else rng.choice(special)
            calls.append(("on_press", (key, False)))
            calls.append(("on_release", (key, False)))
    return calls[:n]


def real_callbacks(queue: EventQueue) -> dict[str, Callback]:
    """The callbacks ``PynputHooks.start`` gives pynput's listeners."""
    return {
        **_pynput._mouse_callbacks(queue, time.time, _pynput._ServerTime()),
        **_pynput._key_callbacks(queue, time.time, _pynput._ServerTime()),
    }


def run_direct(
    calls: list[tuple[str, tuple[Any, ...]]], real: bool, paced: bool
) -> tuple[array[int], dict[str, array[int]], int, int]:
    """Call the callbacks; (all durations, durations per callback, drops, gen0 collections)."""
    queue = EventQueue(maxsize=10_000)
    per_name = {name: array("q") for name in NAMES}
    base = real_callbacks(queue) if real else dict.fromkeys(NAMES, empty)
    shims = {name: timed(base[name], per_name[name]) for name in NAMES}
    # Resolved before timing starts: the loop below only calls.
    plan = [(shims[name], args) for name, args in calls]
    sleep = time.sleep
    gen0 = gc.get_stats()[0]["collections"]
    with consumer(queue):
        if paced:
            for i in range(0, len(plan), 20):
                for shim, args in plan[i : i + 20]:
                    shim(*args)
                sleep(0.0002)
        else:
            for shim, args in plan:
                shim(*args)
    gen0 = gc.get_stats()[0]["collections"] - gen0
    every = array("q")
    for samples in per_name.values():
        every.extend(samples)
    return every, per_name, queue.dropped_total, gen0


# -- (b) real listeners on Xvfb ------------------------------------------------------

INJECTOR = r"""
import random, sys, time
from Xlib import X, XK, display
from Xlib.ext import xtest

count, rate, seed = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
d = display.Display()
code = lambda name: d.keysym_to_keycode(XK.string_to_keysym(name))
printable = [code(c) for c in "abcdefghijklmnopqrstuvwxyz"] + [code("space"), code("period")]
special = [code(k) for k in ("Shift_L", "Return", "BackSpace", "Left", "Right", "Tab")]
rng = random.Random(seed)
events = []
x, y = 500, 400
while len(events) < count:
    r = rng.random()
    if r < 0.85:
        x = min(1900, max(20, x + rng.choice((-1, 1)) * rng.randint(1, 8)))
        y = min(1060, max(20, y + rng.choice((-1, 1)) * rng.randint(1, 8)))
        events.append((X.MotionNotify, 0, x, y))
    elif r < 0.88:
        events += [(X.ButtonPress, 1, 0, 0), (X.ButtonRelease, 1, 0, 0)]
    elif r < 0.90:
        b = rng.choice((4, 5))
        events += [(X.ButtonPress, b, 0, 0), (X.ButtonRelease, b, 0, 0)]
    else:
        k = rng.choice(printable) if rng.random() < 0.7 else rng.choice(special)
        events += [(X.KeyPress, k, 0, 0), (X.KeyRelease, k, 0, 0)]
start = time.perf_counter()
for i, (kind, detail, ex, ey) in enumerate(events):
    if kind == X.MotionNotify:
        xtest.fake_input(d, kind, x=ex, y=ey)
    else:
        xtest.fake_input(d, kind, detail)
    if i % 8 == 7:
        d.flush()
        ahead = start + (i + 1) / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
d.sync()
# pynput reports a wheel "click" once, on the press: releases of 4/5 call nothing.
silent = sum(1 for kind, detail, _, _ in events if kind == X.ButtonRelease and detail in (4, 5))
print(len(events), len(events) - silent, time.perf_counter() - start)
"""


@contextlib.contextmanager
def shimmed_hooks(real: bool, per_name: dict[str, array[int]]) -> Iterator[None]:
    """Make ``PynputHooks.start`` hand pynput shimmed callbacks (real ones or empty)."""
    mouse, keys = _pynput._mouse_callbacks, _pynput._key_callbacks

    def wrap(factory: Callable[[EventQueue, Any, Any], dict[str, Callback]]) -> Callable[..., Any]:
        def make(queue: EventQueue, clock: Any, server_time: Any) -> dict[str, Callback]:
            callbacks = factory(queue, clock, server_time)
            if not real:
                callbacks = dict.fromkeys(callbacks, empty)
            return {name: timed(cb, per_name[name]) for name, cb in callbacks.items()}

        return make

    _pynput._mouse_callbacks = wrap(mouse)
    _pynput._key_callbacks = wrap(keys)
    try:
        yield
    finally:
        _pynput._mouse_callbacks, _pynput._key_callbacks = mouse, keys


def run_xtest(
    display: str, events: int, rate: float, seed: int, real: bool, poll: float | None = None
) -> tuple[array[int], dict[str, array[int]], int, int, int]:
    """(durations, per callback, events injected, callbacks expected, events the consumer saw)."""
    per_name = {name: array("q") for name in NAMES}
    queue = EventQueue(maxsize=10_000)
    hooks = PynputHooks()
    with shimmed_hooks(real, per_name), consumer(queue, poll) as seen:
        hooks.start(queue)
        try:
            done = subprocess.run(
                [sys.executable, "-c", INJECTOR, str(events), str(rate), str(seed)],
                env={**os.environ, "DISPLAY": display},
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            injected, expected = map(int, done.stdout.split()[:2])

            # Wait for the listeners to catch up: counts stable for 0.3 s.
            last = [-1, time.monotonic()]

            def settled() -> bool:
                n = sum(len(a) for a in per_name.values())
                if n != last[0]:
                    last[0], last[1] = n, time.monotonic()
                return time.monotonic() - last[1] > 0.3

            wait_for(settled, timeout=30, interval=0.05, what="the listeners to catch up")
        finally:
            hooks.stop()
    every = array("q")
    for samples in per_name.values():
        every.extend(samples)
    return every, per_name, injected, expected, seen[0]


# -- report ------------------------------------------------------------------------------


def machine() -> list[str]:
    model = cpu_model()
    from importlib.metadata import version

    import PIL
    from PIL import features

    webp = features.version("webp") if features.check("webp") else "no"
    return [
        f"machine:  {model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"python:   {platform.python_version()} ({platform.python_implementation()}), "
        f"Pillow {PIL.__version__} (WebP: {webp}), pynput {version('pynput')}, "
        f"python-xlib {version('python-xlib')}",
        f"gc:       enabled={gc.isenabled()} thresholds={gc.get_threshold()}, "
        f"switch interval {sys.getswitchinterval() * 1000:.0f} ms",
    ]


def row(label: str, s: dict[str, float]) -> str:
    cells = "".join(f"{s[name]:>9.2f}" for name, _ in STATS)
    return f"{label:<50}{int(s['n']):>9,}{cells}{s['max']:>10.1f}"


HEADER = f"{'case':<50}{'calls':>9}" + "".join(f"{n:>9}" for n, _ in STATS) + f"{'max':>10}"


def ratio(real: dict[str, float], base: dict[str, float]) -> str:
    parts = [f"{name} {real[name] / base[name]:.1f}x" for name in ("p50", "p99")]
    return "    ratio to the empty callback: " + ", ".join(parts)


def verdict(label: str, s: dict[str, float]) -> str:
    word = "meets" if s["p99"] <= TARGET_P99_US else "MISSES"
    return f"  {label}: p99 {s['p99']:.2f} µs {word} the {TARGET_P99_US:.0f} µs target"


#: (label, statistics, label of its empty-callback baseline or None)
Result = tuple[str, dict[str, float], str | None]


def bench_direct(args: argparse.Namespace, notes: list[str]) -> list[Result]:
    calls = synthetic_calls(args.calls, args.seed)
    mix: dict[str, int] = {}
    for name, _ in calls:
        mix[name] = mix.get(name, 0) + 1
    notes.append(f"(a) mix per run: {mix}")
    out: list[Result] = []
    for paced in (True, False):
        mode = "paced" if paced else "back-to-back"
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        per_kind: dict[str, list[dict[str, float]]] = {name: [] for name in NAMES}
        drops = gen0 = 0
        for _ in range(args.runs):
            for real in (False, True):
                every, by_name, dropped, collections = run_direct(calls, real, paced)
                runs[real].append(summarise(every))
                if real:
                    drops += dropped
                    gen0 += collections
                    for name in NAMES:
                        per_kind[name].append(summarise(by_name[name]))
        base = f"(a) direct, {mode}: empty callback"
        out.append((base, median_of(runs[False]), None))
        out.append((f"(a) direct, {mode}: PynputHooks", median_of(runs[True]), base))
        if paced:
            for name in NAMES:
                out.append((f"      {name}", median_of(per_kind[name]), None))
        notes.append(
            f"(a) {mode}: {drops} events dropped (queue full), "
            f"{gen0} gen-0 collections in the {args.runs} PynputHooks runs"
        )
    return out


def bench_xtest(display: str, args: argparse.Namespace, notes: list[str]) -> list[Result]:
    out: list[Result] = []
    for rate in args.rates:
        events = round(rate * args.xtest_seconds)
        cases: list[tuple[str, bool, float | None]] = [
            ("empty callback", False, None),
            ("PynputHooks", True, None),
        ]
        if rate == args.rates[0]:
            cases.append(("PynputHooks, consumer polls 10 ms", True, 0.01))
        runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in cases}
        for i in range(args.runs):
            for label, real, poll in cases:
                every, _by, injected, expected, seen = run_xtest(
                    display, events, rate, args.seed + i, real, poll
                )
                runs[label].append(summarise(every))
                if len(every) != expected or (real and seen != expected):
                    notes.append(
                        f"(b) {rate:g}/s {label} run {i + 1}: {injected} XTEST events, "
                        f"{expected} callbacks expected, {len(every)} ran, {seen} queued"
                    )
        base = f"(b) XTEST {rate:g}/s: empty callback"
        for label, _, _ in cases:
            name = f"(b) XTEST {rate:g}/s: {label}"
            out.append((name, median_of(runs[label]), None if name == base else base))
            by_run = ", ".join(f"{r['p99']:.1f}" for r in runs[label])
            notes.append(f"(b) {rate:g}/s {label}: p99 by run {by_run} µs")
        notes.append(
            f"(b) {rate:g}/s: {events} XTEST events per run; every run's callbacks "
            "matched the injected events unless noted"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000, help="direct calls per run")
    parser.add_argument(
        "--rates",
        type=lambda v: [float(r) for r in v.split(",")],
        default=[1000.0, 4000.0],
        help="XTEST events per second, comma-separated (default 1000,4000)",
    )
    parser.add_argument("--xtest-seconds", type=float, default=4.0, help="per XTEST run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    notes: list[str] = []
    desktop = start_desktop()
    try:
        with display_env(desktop.display):
            print("\n".join(machine()))
            print(f"desktop:  Xvfb {desktop.display} + openbox (tests.desktop)", flush=True)
            floor = summarise(timer_floor(args.calls))
            results = bench_direct(args, notes)
            results += bench_xtest(desktop.display, args, notes)
    finally:
        desktop.close()

    print()
    print(
        f"entry-to-return per callback, µs; median of {args.runs} runs per statistic, "
        "max is the worst of all runs"
    )
    print(HEADER)
    print(row("timer floor (two perf_counter_ns calls)", floor))
    stats = {label: s for label, s, _ in results}
    for label, s, base in results:
        print(row(label, s))
        if base is not None:
            print(ratio(s, stats[base]))
    print()
    for note in notes:
        print(note)
    print()
    print(f"verdict (target p99 <= {TARGET_P99_US:.0f} µs):")
    for label, s, base in results:
        if base is not None:
            print(verdict(label, s))
    rates = ",".join(f"{r:g}" for r in args.rates)
    print(
        f"command:  .venv/bin/python bench/input_callback.py --calls {args.calls} "
        f"--rates {rates} --xtest-seconds {args.xtest_seconds:g} --runs {args.runs} "
        f"--seed {args.seed}"
    )


if __name__ == "__main__":
    main()
