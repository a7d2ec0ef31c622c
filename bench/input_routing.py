"""What placing input and pixels by the X server's truth costs, per event, on a real desktop.

Run:  .venv/bin/python bench/input_routing.py [--events N] [--baseline-tree DIR]

The capture filter asks the window probe, on the agent's pipeline thread,
where each key and press really went (``XorgWindowProbe.key_receiver``,
``pointer_receiver``), and for each pointer move whether it lies on the
visible part of the focused window (``shows``); the grab thread asks for the
window's visible region before a grab and whether anything changed after it
(``visible_region``, ``unchanged_since``). This script times each of those
calls on a private Xvfb + openbox with the work app focused and another app
above part of it, for input injected with XTEST from a connection of its own:

- a key whose read is fresh (the key came after the last read: the usual
  case, three round trips) and one answered by the last read (keys that
  waited in the agent's queue);
- a press: the call's wall time, which includes waiting until the server's
  clock is 30 ms past the press (so another client's grab released by the
  press is seen), and its CPU time, which is the real cost;
- a move (``shows``), and the per-frame questions.

With ``--baseline-tree DIR`` (a checkout of the code before the change, e.g.
``git worktree add /tmp/before 216e67f``) the same desktop is also asked the
old way, in a subprocess importing that tree: ``window_at`` plus ``covering``
per press (what the old pipeline thread paid), ``covering`` per frame, and
nothing per key (keys went to the last focused window the watcher saw).

The desktop is started and closed by this script; it kills only the processes
it started. Results go in BENCHMARKS.md by hand. Medians and p99 in µs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tests.desktop as harness
from agent.events import KeyEvent, MouseButton
from agent.sources._xorg import XorgWindowProbe
from bench._machine import cpu_model

ROOT = Path(__file__).resolve().parent.parent
WORK = (0, 0, 1280, 900)
OTHER = (900, 500, 600, 400)

_BASELINE = r"""
import json, sys, time, statistics
sys.path.insert(0, sys.argv[1])
from agent.sources._xorg import XorgWindowProbe
probe = XorgWindowProbe()
n = int(sys.argv[2]); x, y = int(sys.argv[3]), int(sys.argv[4])
press, frame = [], []
active = probe.active()
for _ in range(n):
    t0 = time.perf_counter()
    window = probe.window_at(x, y)
    if window is not None:
        probe.covering(window)
    press.append((time.perf_counter() - t0) * 1e6)
    t0 = time.perf_counter()
    probe.covering(active)
    frame.append((time.perf_counter() - t0) * 1e6)
probe.close()
print(json.dumps({"press": press, "frame": frame}))
"""


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(ordered):8.1f}  p99 {p99:8.1f}"


def _last_raw(probe: XorgWindowProbe, kind: str, pressed: bool, after: int) -> int:
    """Server time of the newest raw event of that kind (waits for it to arrive)."""
    view = probe._view
    assert view is not None
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        with probe._lock:
            view.drain()
            for raw in reversed(view._raw):
                if raw.kind == kind and raw.pressed == pressed and raw.position > after:
                    return raw.time
        time.sleep(0.001)
    raise RuntimeError("no raw event arrived")


def _position(probe: XorgWindowProbe) -> int:
    view = probe._view
    assert view is not None
    with probe._lock:
        view.drain()
        return view._position


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="events of each kind")
    parser.add_argument("--baseline-tree", type=Path, default=None)
    args = parser.parse_args()

    from Xlib import X, display
    from Xlib.ext import xtest

    desktop = harness.start_desktop()
    try:
        os.environ["DISPLAY"] = desktop.display
        work = desktop.launch_app(
            "tests.e2e.workapp", "overt-workapp", "--x", WORK[0], "--y", WORK[1],
            "--width", WORK[2], "--height", WORK[3],
        )  # fmt: skip
        desktop.launch_app(
            "tests.e2e.otherapp", "overt-otherapp", "--x", OTHER[0], "--y", OTHER[1],
            "--width", OTHER[2], "--height", OTHER[3],
        )  # fmt: skip
        desktop.xdotool("windowactivate", "--sync", work.window_id)
        time.sleep(0.5)
        probe = XorgWindowProbe()
        probe.subscribe(lambda _w: None)
        injector = display.Display(desktop.display)
        keycode = injector.keysym_to_keycode(ord("a"))
        active = probe.active()
        assert active is not None
        assert active.window_id == work.window_id
        px, py = active.rect.x + 200, active.rect.y + 200

        fresh, cached, press_wall, press_cpu, moves, frames = [], [], [], [], [], []
        wrong = 0
        for _ in range(args.events):
            before = _position(probe)
            xtest.fake_input(injector, X.KeyPress, keycode)
            xtest.fake_input(injector, X.KeyRelease, keycode)
            injector.sync()
            stamp = _last_raw(probe, "key", True, before)
            event = KeyEvent(time.time(), "a", True, "a", stamp)
            t0 = time.perf_counter()
            got = probe.key_receiver(event)
            fresh.append((time.perf_counter() - t0) * 1e6)
            wrong += got != work.window_id
            t0 = time.perf_counter()
            probe.key_receiver(event)
            cached.append((time.perf_counter() - t0) * 1e6)
        for _ in range(max(20, args.events // 5)):
            before = _position(probe)
            xtest.fake_input(injector, X.MotionNotify, x=px, y=py)
            xtest.fake_input(injector, X.ButtonPress, 1)
            xtest.fake_input(injector, X.ButtonRelease, 1)
            injector.sync()
            stamp = _last_raw(probe, "button", True, before)
            press = MouseButton(time.time(), px, py, "left", True, stamp)
            t0, c0 = time.perf_counter(), time.process_time()
            got = probe.pointer_receiver(press)
            press_wall.append((time.perf_counter() - t0) * 1e6)
            press_cpu.append((time.process_time() - c0) * 1e6)
            wrong += got != work.window_id
        for i in range(args.events * 10):
            t0 = time.perf_counter()
            probe.shows(work.window_id, px + i % 50, py)
            moves.append((time.perf_counter() - t0) * 1e6)
        for _ in range(args.events):
            t0 = time.perf_counter()
            visible = probe.visible_region(active)
            if visible is not None:
                probe.unchanged_since(visible)
            frames.append((time.perf_counter() - t0) * 1e6)

        print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"events per kind: {args.events}; answers not the work app: {wrong}")
        print(f"key, fresh read             {_summary(fresh)} µs")
        print(f"key, answered by last read  {_summary(cached)} µs")
        print(f"press, wall (incl. settle)  {_summary(press_wall)} µs")
        print(f"press, CPU                  {_summary(press_cpu)} µs")
        print(f"move (shows)                {_summary(moves)} µs")
        print(f"frame (visible + unchanged) {_summary(frames)} µs")
        probe.close()
        if args.baseline_tree is not None:
            out = subprocess.run(
                [sys.executable, "-c", _BASELINE, str(args.baseline_tree.resolve()),
                 str(args.events), str(px), str(py)],
                capture_output=True, text=True, check=True,
                env={**os.environ, "DISPLAY": desktop.display},
            )  # fmt: skip
            old = json.loads(out.stdout.strip().splitlines()[-1])
            print("baseline (the tree given): key 0 µs (no check)")
            print(f"baseline press (window_at + covering) {_summary(old['press'])} µs")
            print(f"baseline frame (covering)             {_summary(old['frame'])} µs")
    finally:
        desktop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
