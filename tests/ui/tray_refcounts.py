"""``overt tray`` with its references to None, True and False counted while it runs.

A C extension that returns None, True or False without taking a reference
drops one at every call; on Python 3.11 these objects are counted like any
other, and the process dies when a count reaches zero ("Fatal Python error:
none_dealloc"), at the latest while the interpreter shuts down. Only the
process itself can read its counts, so this module runs the real tray
(``ui.app.main``: its heartbeat, its status poll, its quit path) in this
process, and a thread writes ``sys.getrefcount`` of the three objects to a
JSON-lines file every ``--every`` seconds::

    {"t": 1.5, "phase": "running", "none": 16948, "true": 4156, "false": 3986}

After ``--seconds`` it sends this process SIGTERM, as a session manager
would, so the tray quits its own way; a last line (``"phase": "stopped"``)
is written once ``main`` has returned. The exit status is the tray's.
``--without-binding-check`` lets the tray start on a binding that
``ui.qt_binding`` refuses, to measure what that binding does.

Run:  python -m tests.ui.tray_refcounts --out FILE [--seconds S] [--every S]
          [--without-binding-check] -- TRAY-ARGS…

:func:`read_samples` and :func:`trend` read the file back (tests/ui and
bench/tray_soak.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COUNTED = ("none", "true", "false")


def sample(started: float, phase: str) -> dict[str, Any]:
    return {
        "t": round(time.monotonic() - started, 3),
        "phase": phase,
        "none": sys.getrefcount(None),
        "true": sys.getrefcount(True),
        "false": sys.getrefcount(False),
    }


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The samples written so far (a line cut short by a crash is left out)."""
    samples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            samples.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return samples


@dataclass(frozen=True, slots=True)
class Trend:
    """How one count moved while the tray ran: least-squares slope, first and last."""

    name: str
    per_second: float
    first: int
    last: int

    @property
    def per_minute(self) -> float:
        return self.per_second * 60


def trend(samples: Sequence[dict[str, Any]], name: str, after_s: float = 0.0) -> Trend:
    """The trend of ``name`` over the running samples taken after ``after_s``."""
    points = [(s["t"], s[name]) for s in samples if s["phase"] == "running" and s["t"] >= after_s]
    if len(points) < 2:
        raise ValueError(f"{len(points)} samples of {name} after {after_s} s: too few for a trend")
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread
    return Trend(name, slope, points[0][1], points[-1][1])


def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    args = list(argv)
    tray_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, tray_args = args[:cut], args[cut + 1 :]
    parser = argparse.ArgumentParser(prog="python -m tests.ui.tray_refcounts")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--without-binding-check", action="store_true")
    return parser.parse_args(args), tray_args


def main(argv: Sequence[str] | None = None) -> int:
    options, tray_args = _parse(sys.argv[1:] if argv is None else argv)
    if options.without_binding_check:
        import ui.qt_binding

        ui.qt_binding.binding_fault = lambda calls=0: None

    import ui.app

    started = time.monotonic()
    out = options.out.open("w", encoding="utf-8")
    lock = threading.Lock()

    def write(phase: str) -> None:
        with lock:
            out.write(json.dumps(sample(started, phase)) + "\n")
            out.flush()

    def sampler() -> None:
        deadline = started + options.seconds
        while time.monotonic() < deadline:
            write("running")
            time.sleep(options.every)
        write("running")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=sampler, name="refcount-sampler", daemon=True).start()
    code = ui.app.main(tray_args)
    write("stopped")
    out.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
