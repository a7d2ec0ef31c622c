"""Bytes of a scripted work session: the real agent against a naive recorder.

Run:  .venv/bin/python bench/session_bytes.py [--minutes M] [--seed S] [--hz HZ]
                                               [--save DIR] [--test-policy-screenshots]

Starts a private desktop (Xvfb + openbox, :func:`tests.desktop.start_desktop`)
with the work app and the other app (not allow-listed) on it, and the real
:class:`agent.app.Agent` (pynput hooks, python-xlib window probe, mss grabs)
under ``policies/examples/test-workapp.json`` with fresh dates, signed with a
key generated for this run, consent recorded, writing to a ``MemorySink``.
The work app's screenshot settings are replaced by those a real office
policy gives its office suite: the ``office-suite`` app of
``policies/examples/office.json`` (5 s apart at least, 6 per minute, max
width 1280, quality 50 — sparser than the model's defaults, 2 s and 12).
``--test-policy-screenshots`` keeps the test policy's own (0.5 s, 60 per
minute), which were made aggressive for fast tests.

In the same process and from the same input a **naive recorder** runs: its
own pynput mouse and keyboard listeners write every raw event as one JSON
line (``json.dumps`` defaults) into a buffer, and a thread grabs the whole
screen every 5 s as a PNG (mss + Pillow, default compression).

The session is scripted from a seed and driven through XTEST for ``--minutes``
of wall time: pointer movement along minimum-jerk reaching curves reported
at ``--hz`` (200 by default; integer pixels, slight tremor, a bow and
sometimes a corrective sub-movement, as hands do: the model of
:func:`bench.pipeline.hand_path`), clicks, text selection by dragging, sentences
typed into the editor with human inter-key delays and corrections, ctrl+s,
the drop-down, the menu, scrolling the table and the editor, a switch to the
other app (and some activity there) every 30-60 s, and idle reading time.

Reports the batch bytes (each header's JSON plus its body, as the agent
writes them today: sealing is not built yet, and HPKE plus the device
signature will add at least 112 bytes per batch — a 32-byte encapsulated key,
a 16-byte tag, a 64-byte signature), the naive bytes
(PNGs plus JSON), their ratio, events seen, records per kind (from the batch
headers' counts), screenshots kept, and what a kept mouse sample costs: the
session's ``MousePathRecord`` s encoded alone with ``encode_body``, less an
empty body, divided by the samples they keep (once all in one body, and once
batch by batch as they were sent), and what they add to the batches they
were sent in (``bench.pipeline.mouse_bytes_in_batches``). It also names the
codec of every screenshot blob. Results go in BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.app import Agent
from agent.config import AgentConfig
from agent.local_state import LocalState
from agent.pipeline.consent import ConsentRecord
from agent.sinks.memory import MemorySink
from agent.sources._pynput import PynputHooks, _end_xrecord
from agent.sources._xorg import XorgWindowProbe
from agent.sources.screen import select_screen_grabber
from bench._machine import machine
from bench._pointer import PathTap, summary
from bench.pipeline import hand_path, mouse_bytes_in_batches, mouse_bytes_per_sample, reach
from overt.wire.batch import Batch, SignalCounts
from overt.wire.body import decode_body
from overt.wire.records import MousePathRecord, ScreenshotKind, ScreenshotRecord
from policies.keys import generate_private_key, public_key_model
from policies.model import SignerSet
from policies.verify import parse_policy_payload, sign_policy
from tests.desktop import Desktop, display_env, start_desktop, wait_for

ROOT = Path(__file__).resolve().parent.parent
# Where the apps sit (client areas, root coordinates), as in tests/e2e/conftest.py.
WORKAPP = (100, 120, 800, 600)
OTHERAPP = (700, 400, 600, 400)
# Widgets of the work app in root coordinates, measured on a screenshot of it.
MENU_FILE = (119, 128)
MENU_ITEM_STEP = 26  # the File menu's items below it
COMBO = (132, 890, 158)  # x from, x to, y
COMBO_ITEM_STEP = 24
EDITOR = (120, 880, 190, 500)  # x from, x to, y from, y to
TABLE_CELLS_X = (171, 272, 372)
TABLE_ROWS_Y = (567, 597, 628, 657, 687)
OTHER_VISIBLE = (920, 1280, 420, 780)  # the other app where the work app never covers it
WORKAPP_VISIBLE = (130, 660, 190, 380)  # the work app where the other app never covers it
NAIVE_SHOT_EVERY_S = 5.0

SENTENCES = (
    "Customer reports the export fails after the latest update.",
    "Reproduced on staging; the job times out after 30 seconds.",
    "Assigned to the data team, waiting for logs from the customer.",
    "Closing as a duplicate of T-102, same root cause.",
    "Next step: check the retry settings and the queue length.",
    "Called the customer back, they confirmed the workaround helps.",
    "Please review the attached notes before the Friday meeting.",
    "Escalated to tier two because the invoice totals do not match.",
    "Updated the owner and the due date, see the table below.",
    "The fix is deployed; monitoring error rates for one more day.",
)
_KEY_NAMES = {
    " ": "space",
    ".": "period",
    ",": "comma",
    ";": "semicolon",
    ":": "colon",
    "-": "minus",
    "'": "apostrophe",
    "?": "question",
    "!": "exclam",
    "\n": "Return",
}


# ---------------------------------------------------------------- naive recorder


class NaiveRecorder:
    """Every raw input event as a JSON line, and a full-screen PNG every 5 s."""

    def __init__(self, display: str) -> None:
        self._display = display
        self._lines: list[bytes] = []
        self.png_bytes = 0
        self.screenshots = 0
        self._listeners: list[Any] = []
        self._stop = threading.Event()
        self._shooter = threading.Thread(target=self._shoot, name="naive-shots", daemon=True)

    @property
    def events(self) -> int:
        return len(self._lines)

    @property
    def json_bytes(self) -> int:
        return sum(len(line) for line in self._lines)

    def start(self) -> None:
        from pynput import keyboard, mouse

        lines = self._lines

        def emit(**event: object) -> None:
            event["time"] = time.time()
            lines.append(json.dumps(event).encode() + b"\n")

        self._listeners = [
            mouse.Listener(
                on_move=lambda x, y: emit(type="move", x=x, y=y),
                on_click=lambda x, y, b, p: emit(type="click", x=x, y=y, button=str(b), pressed=p),
                on_scroll=lambda x, y, dx, dy: emit(type="scroll", x=x, y=y, dx=dx, dy=dy),
            ),
            keyboard.Listener(
                on_press=lambda k: emit(type="key", key=str(k), pressed=True),
                on_release=lambda k: emit(type="key", key=str(k), pressed=False),
            ),
        ]
        for listener in self._listeners:
            listener.start()
            listener.wait()
        self._shooter.start()

    def stop(self) -> None:
        self._stop.set()
        self._shooter.join()
        for listener in self._listeners:
            listener.stop()
            # pynput's X stop() waits for the next input event to take effect;
            # the agent's helper ends the RECORD context at once.
            _end_xrecord(listener)
            listener.join()

    def _shoot(self) -> None:
        import mss
        from PIL import Image

        factory = getattr(mss, "MSS", None) or mss.mss
        with factory(display=self._display) as sct:
            next_at = time.monotonic()
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                shot = sct.grab(sct.monitors[0])
                buf = io.BytesIO()
                Image.frombytes("RGB", shot.size, shot.rgb).save(buf, "PNG")
                self.png_bytes += buf.tell()
                self.screenshots += 1
                next_at += NAIVE_SHOT_EVERY_S


# ---------------------------------------------------------------- the person


class Person:
    """A scripted user at the keyboard and mouse, through XTEST."""

    def __init__(self, display: str, rng: random.Random, hz: float) -> None:
        from Xlib import display as xdisplay

        self._d = xdisplay.Display(display)
        self._rng = rng
        self._hz = hz
        pointer = self._d.screen().root.query_pointer()
        self.x, self.y = int(pointer.root_x), int(pointer.root_y)
        self.moves = 0

    def close(self) -> None:
        self._d.close()

    def _fake(self, event_type: int, detail: int = 0, x: int = 0, y: int = 0) -> None:
        from Xlib.ext import xtest

        xtest.fake_input(self._d, event_type, detail, x=x, y=y)
        self._d.flush()

    # -- pointer

    def move_to(self, tx: int, ty: int, width: float = 20.0) -> None:
        """Reach for (tx, ty) like a hand (see :func:`bench.pipeline.hand_path`)."""
        self._play(hand_path(self._rng, self.x, self.y, tx, ty, hz=self._hz, width=width))

    def _play(self, samples: list[tuple[float, int, int]]) -> None:
        """Send the samples as XTEST motion at their times (seconds from now)."""
        from Xlib import X

        start = time.monotonic()
        for t, x, y in samples:
            self.sleep_until(start + t)
            self._fake(X.MotionNotify, x=x, y=y)
            self.x, self.y = x, y
            self.moves += 1

    def click(self, button: int = 1, hold: float | None = None) -> None:
        from Xlib import X

        self.sleep(self._rng.uniform(0.05, 0.25))  # settle on the target
        self._fake(X.ButtonPress, button)
        self.sleep(hold if hold is not None else self._rng.uniform(0.06, 0.13))
        self._fake(X.ButtonRelease, button)

    def drag_to(self, tx: int, ty: int) -> None:
        from Xlib import X

        self.sleep(self._rng.uniform(0.1, 0.3))
        self._fake(X.ButtonPress, 1)
        self.sleep(self._rng.uniform(0.08, 0.2))
        self._play(reach(self._rng, self.x, self.y, tx, ty, hz=self._hz, width=10))
        self.sleep(self._rng.uniform(0.05, 0.2))
        self._fake(X.ButtonRelease, 1)

    def scroll(self, notches: int) -> None:
        from Xlib import X

        button = 4 if notches > 0 else 5  # 4 is up
        for _ in range(abs(notches)):
            self._fake(X.ButtonPress, button)
            self._fake(X.ButtonRelease, button)
            self.sleep(self._rng.uniform(0.03, 0.12))

    # -- keyboard

    def _keycode(self, name: str) -> tuple[int, bool]:
        from Xlib import XK

        keysym = XK.string_to_keysym(name)
        for code, index in self._d.keysym_to_keycodes(keysym):
            if index in (0, 1):
                return code, index == 1
        raise RuntimeError(f"no key for {name!r} on this keyboard map")

    def key(self, *names: str) -> None:
        """A chord, e.g. key("Control_L", "s"): pressed in order, released in reverse."""
        from Xlib import X

        codes = [self._keycode(n)[0] for n in names]
        for code in codes:
            self._fake(X.KeyPress, code)
            self.sleep(self._rng.uniform(0.02, 0.06))
        for code in reversed(codes):
            self._fake(X.KeyRelease, code)
            self.sleep(self._rng.uniform(0.01, 0.04))

    def type(self, text: str) -> None:
        """Type like a person: about 5 keys/s, uneven, with the odd typo fixed."""
        from Xlib import X

        rng = self._rng
        shift = self._keycode("Shift_L")[0]
        for ch in text:
            if rng.random() < 0.03 and ch.isalpha():
                self._stroke(rng.choice("asdfjkl"), shift)  # a typo ...
                self.sleep(rng.uniform(0.2, 0.5))
                code, _ = self._keycode("BackSpace")  # ... noticed and fixed
                self._fake(X.KeyPress, code)
                self.sleep(rng.uniform(0.04, 0.09))
                self._fake(X.KeyRelease, code)
            self.sleep(min(1.5, rng.lognormvariate(math.log(0.16), 0.45)))
            self._stroke(ch, shift)

    def _stroke(self, ch: str, shift: int) -> None:
        from Xlib import X

        code, shifted = self._keycode(_KEY_NAMES.get(ch, ch))
        if shifted:
            self._fake(X.KeyPress, shift)
            self.sleep(self._rng.uniform(0.02, 0.05))
        self._fake(X.KeyPress, code)
        self.sleep(self._rng.uniform(0.04, 0.1))
        self._fake(X.KeyRelease, code)
        if shifted:
            self.sleep(self._rng.uniform(0.01, 0.03))
            self._fake(X.KeyRelease, shift)

    # -- time

    def sleep(self, seconds: float) -> None:
        self.sleep_until(time.monotonic() + seconds)

    @staticmethod
    def sleep_until(due: float) -> float:
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
            now = time.monotonic()
        return now


# ---------------------------------------------------------------- the script


def _in(rng: random.Random, box: tuple[int, int, int, int]) -> tuple[int, int]:
    x0, x1, y0, y1 = box
    return rng.randint(x0, x1), rng.randint(y0, y1)


def run_session(person: Person, rng: random.Random, seconds: float) -> dict[str, int]:
    """Work in the work app until ``seconds`` have passed; returns how often each
    action ran."""
    done: dict[str, int] = {}
    end = time.monotonic() + seconds
    next_switch = time.monotonic() + rng.uniform(30, 60)

    def edit() -> None:
        person.move_to(*_in(rng, EDITOR))
        person.click()
        person.type(rng.choice(SENTENCES) + rng.choice((" ", "\n")))

    def save() -> None:
        person.sleep(rng.uniform(0.3, 1.0))
        person.key("Control_L", "s")

    def select() -> None:
        x, y = _in(rng, EDITOR)
        person.move_to(x, y)
        person.drag_to(min(EDITOR[1], x + rng.randint(40, 400)), y + rng.choice((0, 0, 16, 32)))

    def dropdown() -> None:
        x0, x1, y = COMBO
        person.move_to(rng.randint(x0 + 50, x1 - 50), y, width=30)
        person.click()
        person.sleep(rng.uniform(0.4, 1.0))  # read the choices
        # Qt opens the list over the current item; any of the four is within reach.
        person.move_to(person.x + rng.randint(-60, 60), y + COMBO_ITEM_STEP * rng.randint(-1, 3))
        person.click()

    def menu() -> None:
        person.move_to(*MENU_FILE, width=25)
        person.click()
        person.sleep(rng.uniform(0.3, 0.8))
        person.move_to(MENU_FILE[0] + 20, MENU_FILE[1] + MENU_ITEM_STEP * rng.randint(1, 2))
        person.sleep(rng.uniform(0.3, 0.6))
        person.key("Escape")

    def table() -> None:
        person.move_to(rng.choice(TABLE_CELLS_X), rng.choice(TABLE_ROWS_Y), width=40)
        person.click()
        for _ in range(rng.randint(1, 3)):
            person.scroll(rng.choice((-1, 1)) * rng.randint(1, 5))
            person.sleep(rng.uniform(0.2, 1.0))

    def scroll_editor() -> None:
        person.move_to(*_in(rng, EDITOR))
        person.scroll(rng.choice((-1, 1)) * rng.randint(2, 8))

    def idle() -> None:
        person.sleep(rng.uniform(2, 8))
        if rng.random() < 0.3:  # the hand nudges the mouse while reading
            person.move_to(person.x + rng.randint(-30, 30), person.y + rng.randint(-30, 30))

    def switch() -> None:
        # Over to the other app (not allow-listed), do something there, come back.
        person.move_to(*_in(rng, OTHER_VISIBLE), width=60)
        person.click()
        for _ in range(rng.randint(1, 3)):
            person.move_to(*_in(rng, OTHER_VISIBLE), width=40)
            person.click()
            if rng.random() < 0.5:
                person.type(rng.choice(("lunch at one?", "ok, thanks", "see you there")))
            person.sleep(rng.uniform(0.5, 3))
        person.move_to(*_in(rng, WORKAPP_VISIBLE), width=60)
        person.click()

    actions: list[tuple[Callable[[], None], float]] = [
        (edit, 5),
        (save, 1.5),
        (select, 1.5),
        (dropdown, 1),
        (menu, 1),
        (table, 1.5),
        (scroll_editor, 1),
        (idle, 2),
    ]
    funcs, weights = zip(*actions, strict=True)
    while time.monotonic() < end:
        if time.monotonic() >= next_switch:
            action = switch
            next_switch = time.monotonic() + rng.uniform(30, 60)
        else:
            action = rng.choices(funcs, weights)[0]
        action()
        done[action.__name__] = done.get(action.__name__, 0) + 1
        person.sleep(rng.uniform(0.2, 1.5))
    return done


# ---------------------------------------------------------------- the agent


def blob_codec(blob: bytes) -> str:
    """``webp-lossless`` (a VP8L chunk), ``webp-lossy``, ``jpeg`` or ``other``."""
    if blob[:2] == b"\xff\xd8":
        return "jpeg"
    if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP":
        return "webp-lossless" if b"VP8L" in blob[12:40] else "webp-lossy"
    return "other"


def example_screenshots(policy: str, app_id: str) -> dict[str, Any]:
    """The screenshot settings of one app in one of ``policies/examples``."""
    doc = json.loads((ROOT / "policies" / "examples" / policy).read_text("utf-8"))
    [app] = [a for a in doc["apps"] if a["id"] == app_id]
    shots: dict[str, Any] = app["capture"]["screenshots"]
    return shots


def start_agent(
    workdir: Path, screenshots: dict[str, Any] | None
) -> tuple[Agent, MemorySink, XorgWindowProbe]:
    """The recipe of tests/e2e/test_capture.py: a run-time key, fresh dates, consent.

    ``screenshots`` replaces the work app's screenshot settings (None keeps
    the test policy's).
    """
    doc = json.loads((ROOT / "policies" / "examples" / "test-workapp.json").read_text("utf-8"))
    if screenshots is not None:
        [app] = [a for a in doc["apps"] if a["id"] == "overt-workapp"]
        app["capture"]["screenshots"] = screenshots
    now = datetime.now(UTC).replace(microsecond=0)
    doc["issued_at"] = (now - timedelta(hours=1)).isoformat()
    doc["expires"] = (now + timedelta(days=30)).isoformat()
    payload = json.dumps(doc).encode()
    key = generate_private_key()
    policy_file = workdir / "policy.signed.json"
    policy_file.write_bytes(sign_policy(payload, [key]))
    state_dir = workdir / "state"
    LocalState(state_dir).save_consent(
        ConsentRecord.accept(parse_policy_payload(payload), time.time())
    )
    config = AgentConfig(
        trusted=SignerSet(keys=(public_key_model(key.public_key()),), threshold=1),
        tenant="example-corp",
        device_group="office",
        state_dir=state_dir,
        policy_file=policy_file,
    )
    sink = MemorySink()
    probe = XorgWindowProbe()
    agent = Agent(
        config,
        probe=probe,
        hooks=PynputHooks(),
        grabber=select_screen_grabber(),
        sink=sink,
    )
    agent.start()
    wait_for(lambda: agent.status().hooks_installed, 10, what="the agent to install its hooks")
    return agent, sink, probe


@dataclass(frozen=True)
class Result:
    batches: list[Batch]
    events_seen: int
    naive_events: int
    naive_json: int
    naive_png: int
    naive_shots: int
    moves_sent: int
    actions: dict[str, int]


@contextlib.contextmanager
def _desktop() -> Iterator[Desktop]:
    desktop = start_desktop()
    try:
        with display_env(desktop.display):
            yield desktop
    finally:
        desktop.close()


def measure(minutes: float, seed: int, hz: float, screenshots: dict[str, Any] | None) -> Result:
    rng = random.Random(seed)
    with _desktop() as desktop, tempfile.TemporaryDirectory() as tmp:
        wx, wy, ww, wh = WORKAPP
        ox, oy, ow, oh = OTHERAPP
        work = desktop.launch_app(
            "tests.e2e.workapp", "overt-workapp",
            "--title", "Overt Work App", "--x", wx, "--y", wy, "--width", ww, "--height", wh,
        )  # fmt: skip
        desktop.launch_app(
            "tests.e2e.otherapp", "overt-otherapp",
            "--x", ox, "--y", oy, "--width", ow, "--height", oh,
        )  # fmt: skip
        desktop.xdotool("windowactivate", "--sync", work.window_id)
        agent, sink, probe = start_agent(Path(tmp), screenshots)
        naive = NaiveRecorder(desktop.display)
        person = Person(desktop.display, rng, hz)
        try:
            naive.start()
            actions = run_session(person, rng, minutes * 60)
            time.sleep(1.0)  # let both take in the last events
            agent.flush()
        finally:
            naive.stop()
            agent.stop()
            probe.close()  # the agent does not own the probe's focus watcher
            person.close()
        return Result(
            batches=list(sink.batches),
            events_seen=agent.status().events_seen,
            naive_events=naive.events,
            naive_json=naive.json_bytes,
            naive_png=naive.png_bytes,
            naive_shots=naive.screenshots,
            moves_sent=person.moves,
            actions=actions,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="wall time of the session")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hz", type=float, default=200.0, help="pointer report rate")
    parser.add_argument(
        "--save", type=Path, help="write each batch there (<seq>.header.json, <seq>.body)"
    )
    parser.add_argument(
        "--test-policy-screenshots",
        action="store_true",
        help="keep test-workapp.json's screenshot settings (0.5 s, 60/min) instead of "
        "office.json's office suite",
    )
    args = parser.parse_args()
    if args.test_policy_screenshots:
        where, shots = "test-workapp.json", None
        shown = example_screenshots("test-workapp.json", "overt-workapp")
    else:
        where, shots = (
            "office.json office-suite",
            example_screenshots("office.json", "office-suite"),
        )
        shown = shots
    tap = PathTap()
    with tap.watching():  # what the agent's coalescer keeps of each path's moves
        r = measure(args.minutes, args.seed, args.hz, shots)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        for b in r.batches:
            (args.save / f"{b.header.seq}.header.json").write_bytes(b.header.to_json())
            (args.save / f"{b.header.seq}.body").write_bytes(b.body)

    batch_bytes = sum(len(b.header.to_json()) + b.header.body_size for b in r.batches)
    naive_bytes = r.naive_json + r.naive_png
    counts = {
        f.name: sum(getattr(b.header.counts, f.name) for b in r.batches)
        for f in fields(SignalCounts)
    }
    image_bytes = 0
    kept = {kind: [0, 0] for kind in ScreenshotKind}  # count, blob bytes
    codecs: dict[str, int] = {}  # "<kind> <codec>": count
    paths_by_batch: list[list[MousePathRecord]] = []
    records_by_batch = []
    for b in r.batches:
        records, images = decode_body(b.body)
        records_by_batch.append(records)
        image_bytes += sum(len(v) for v in images.values())
        for shot in records:
            if isinstance(shot, ScreenshotRecord):
                kept[shot.kind][0] += 1
                kept[shot.kind][1] += len(images[shot.image])
                key = f"{shot.kind} {blob_codec(images[shot.image])}"
                codecs[key] = codecs.get(key, 0) + 1
        paths_by_batch.append([p for p in records if isinstance(p, MousePathRecord)])
    samples = sum(p.samples for ps in paths_by_batch for p in ps)
    all_in_one, per_batch = mouse_bytes_per_sample(paths_by_batch)
    in_batches = mouse_bytes_in_batches(records_by_batch)

    print(f"machine:   {machine()}")
    print(
        f"session:   {args.minutes:g} min wall time, seed {args.seed}, pointer at {args.hz:g} Hz; "
        f"actions "
        f"{dict(sorted(r.actions.items()))}; {r.moves_sent:,} pointer moves sent by XTEST"
    )
    print(
        f"agent:     {len(r.batches)} batches, {batch_bytes:,} bytes (headers "
        f"{batch_bytes - sum(b.header.body_size for b in r.batches):,}, image blobs "
        f"{image_bytes:,}, records {batch_bytes - image_bytes:,} incl. headers); "
        f"{r.events_seen:,} events seen"
    )
    print(f"records:   {counts}")
    print(
        f"shots:     settings of {where} {json.dumps(shown)}; "
        + "; ".join(
            f"{n} {kind}s {b:,} bytes ({b / max(1, n):,.0f} each)" for kind, (n, b) in kept.items()
        )
        + f"; codecs {dict(sorted(codecs.items()))}"
    )
    print(
        f"naive:     {naive_bytes:,} bytes ({r.naive_shots} full-screen PNGs {r.naive_png:,}, "
        f"{r.naive_events:,} JSON events {r.naive_json:,})"
    )
    print(f"ratio:     naive / agent = {naive_bytes / max(1, batch_bytes):.1f}x")
    print(
        f"mouse:     {counts['paths']:,} paths keeping {samples:,} samples of "
        f"{r.moves_sent:,} moves; {all_in_one:.2f} bytes per kept sample after zstd (all "
        f"paths in one body, less an empty body); {per_batch:.2f} within the session's "
        f"own batches, {per_batch * samples:,.0f} bytes in all "
        f"({per_batch * samples / max(1, r.moves_sent):.3f} per pointer move sent); "
        f"{in_batches:.2f} added to the batches with everything else"
    )
    _, rdp_per_batch = mouse_bytes_per_sample(tap.as_rdp(paths_by_batch))
    for line in summary(tap, paths_by_batch, per_batch, rdp_per_batch):
        print(line)


if __name__ == "__main__":
    main()
