"""Hostile and odd X windows for the filter attack tests, drawn with python-xlib.

Run as its own process (one window each)::

    python -m tests.e2e.xwindows --geometry X,Y,W,H --colour RRGGBB \
        --status STATUS.json [--control FIFO] [--log KEYS.log] [options]

The window is a solid fill of ``--colour`` (no toolkit, no text), so a test
can count its pixels in a frame. Options make it what an attack needs: an
override-redirect popup (``--override-redirect``), a window that claims
another app's ``WM_CLASS`` and ``_NET_WM_PID`` (``--wm-class``,
``--net-wm-pid``), a SHAPE bounding region with a hole (``--shape-hole``), a
transient dialog of another window (``--transient-for``), a window type
(``--type notification``), kept above others (``--above``), or not mapped
until told (``--unmapped``, ``--map-after``).

Commands, one per line on the ``--control`` FIFO, are carried out in order;
after each (and an XSync) the status file's ``done`` count goes up by one,
with the command's result (``true``/``false`` for grabs)::

    map | unmap | raise | focus | move X Y | key KEYSYM
    map-focus-key KEYSYM    map, wait until mapped, take the input focus,
                            then press and release KEYSYM through XTEST
                            (a window stealing focus while the user types)
    forge-active WID        write WID into the root's _NET_ACTIVE_WINDOW
                            (any client may; the WM is not asked)
    grab-keyboard | ungrab-keyboard | grab-pointer | ungrab-pointer
    popup-grab X Y W H      create a second, override-redirect window, map it
                            and grab the keyboard on it in one burst, with no
                            round trip between (how a drop-down or launcher
                            opens); ungrab-keyboard ends the grab
    quit

Key and button presses the window receives are appended to ``--log`` (one
line each: ``key <keysym> <char>`` or ``button <n> <x> <y>``), so a test knows
where its input really went. The status file is written atomically (JSON:
``window``, ``pid``, ``done``, ``result``, ``mapped``).

:class:`XWindowProc` is the test side: it sends commands and waits for them.
Importing this module touches no display.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _rect(text: str) -> tuple[int, int, int, int]:
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("expected X,Y,W,H")
    return parts[0], parts[1], parts[2], parts[3]


def _colour(text: str) -> tuple[int, int, int]:
    text = text.lstrip("#")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="xwindows")
    p.add_argument("--geometry", type=_rect, required=True)
    p.add_argument("--colour", type=_colour, default=(255, 128, 0))
    p.add_argument("--title", default="Overt test window")
    p.add_argument("--wm-class", default="overt-xwindow")
    p.add_argument("--net-wm-pid", type=int, default=None, help="claim this _NET_WM_PID")
    p.add_argument("--override-redirect", action="store_true")
    p.add_argument("--shape-hole", type=_rect, default=None, help="window-relative hole")
    p.add_argument("--transient-for", type=lambda s: int(s, 0), default=None)
    p.add_argument("--type", default=None, help="_NET_WM_WINDOW_TYPE_<TYPE>, e.g. notification")
    p.add_argument("--above", action="store_true")
    p.add_argument("--no-input", action="store_true", help="WM_HINTS: never take focus")
    p.add_argument("--unmapped", action="store_true")
    p.add_argument("--map-after", type=float, default=None)
    p.add_argument("--control", type=Path, default=None)
    p.add_argument("--status", type=Path, required=True)
    p.add_argument("--log", type=Path, default=None)
    return p.parse_args(argv)


class _Window:
    """The one window of this process, and the commands it carries out."""

    def __init__(self, args: argparse.Namespace) -> None:
        from Xlib import X, Xatom, Xutil, display
        from Xlib.ext import shape

        self.X, self.Xatom, self.Xutil = X, Xatom, Xutil
        self.args = args
        self.d = display.Display()
        self.d.set_error_handler(lambda *_: None)
        screen = self.d.screen()
        self.root = screen.root
        x, y, w, h = args.geometry
        r, g, b = args.colour
        self.win = self.root.create_window(
            x,
            y,
            w,
            h,
            0,
            screen.root_depth,
            X.InputOutput,
            X.CopyFromParent,
            background_pixel=(r << 16) | (g << 8) | b,
            override_redirect=bool(args.override_redirect),
            event_mask=X.StructureNotifyMask
            | X.ExposureMask
            | X.KeyPressMask
            | X.ButtonPressMask
            | X.FocusChangeMask,
        )
        atom = self.d.intern_atom
        self.win.set_wm_class(args.wm_class, args.wm_class)
        self.win.set_wm_name(args.title)
        self.win.change_property(
            atom("_NET_WM_NAME"), atom("UTF8_STRING"), 8, args.title.encode("utf-8")
        )
        pid = os.getpid() if args.net_wm_pid is None else args.net_wm_pid
        self.win.change_property(atom("_NET_WM_PID"), Xatom.CARDINAL, 32, [pid])
        self.win.set_wm_normal_hints(
            flags=Xutil.USPosition | Xutil.USSize | Xutil.PPosition | Xutil.PSize,
            x=x,
            y=y,
            width=w,
            height=h,
        )
        self.win.set_wm_hints(flags=Xutil.InputHint, input=0 if args.no_input else 1)
        if args.type:
            kind = atom(f"_NET_WM_WINDOW_TYPE_{args.type.upper()}")
            self.win.change_property(atom("_NET_WM_WINDOW_TYPE"), Xatom.ATOM, 32, [kind])
        if args.above:
            self.win.change_property(
                atom("_NET_WM_STATE"), Xatom.ATOM, 32, [atom("_NET_WM_STATE_ABOVE")]
            )
        if args.transient_for:
            transient = self.d.create_resource_object("window", args.transient_for)
            self.win.set_wm_transient_for(transient)
        if args.shape_hole:
            hx, hy, hw, hh = args.shape_hole
            # The bounding region: the whole window minus the hole, as four bands.
            bands = [
                (0, 0, w, hy),
                (0, hy + hh, w, max(0, h - hy - hh)),
                (0, hy, hx, hh),
                (hx + hw, hy, max(0, w - hx - hw), hh),
            ]
            self.win.shape_rectangles(
                shape.SO.Set,
                shape.SK.Bounding,
                X.Unsorted,
                0,
                0,
                [(bx, by, bw, bh) for bx, by, bw, bh in bands if bw > 0 and bh > 0],
            )
        self.mapped = False
        self.done = 0
        self.result: Any = None
        self.log = args.log.open("a", encoding="utf-8", buffering=1) if args.log else None

    # -- status ------------------------------------------------------------

    def write_status(self) -> None:
        status = {
            "window": int(self.win.id),
            "pid": os.getpid(),
            "done": self.done,
            "result": self.result,
            "mapped": self.mapped,
        }
        tmp = self.args.status.with_suffix(".tmp")
        tmp.write_text(json.dumps(status), encoding="utf-8")
        os.replace(tmp, self.args.status)

    # -- events --------------------------------------------------------------

    def pump(self) -> None:
        from Xlib import XK

        X = self.X
        while self.d.pending_events():
            event = self.d.next_event()
            if event.type == X.MapNotify and event.window.id == self.win.id:
                self.mapped = True
            elif event.type == X.UnmapNotify and event.window.id == self.win.id:
                self.mapped = False
            elif event.type == X.KeyPress and self.log is not None:
                keysym = self.d.keycode_to_keysym(event.detail, 0)
                char = XK.keysym_to_string(keysym) or ""
                self.log.write(f"key {keysym:#x} {char if char.isprintable() else ''}\n")
            elif event.type == X.ButtonPress and self.log is not None:
                self.log.write(f"button {event.detail} {event.root_x} {event.root_y}\n")

    def wait_mapped(self, mapped: bool, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        self.d.flush()
        while self.mapped != mapped and time.monotonic() < deadline:
            select.select([self.d.fileno()], [], [], 0.02)
            self.pump()
        return self.mapped == mapped

    # -- commands ----------------------------------------------------------

    def map(self) -> bool:
        self.win.map()
        return self.wait_mapped(True)

    def unmap(self) -> bool:
        self.win.unmap()
        if not self.args.override_redirect:
            # ICCCM: a client withdraws its window with a synthetic UnmapNotify too.
            from Xlib.protocol import event as xevent

            self.root.send_event(
                xevent.UnmapNotify(window=self.win, event=self.root, from_configure=False),
                event_mask=self.X.SubstructureRedirectMask | self.X.SubstructureNotifyMask,
            )
        return self.wait_mapped(False)

    def key(self, keysym_name: str) -> bool:
        from Xlib import XK

        keycode = self.d.keysym_to_keycode(XK.string_to_keysym(keysym_name))
        if not keycode:
            return False
        self.d.xtest_fake_input(self.X.KeyPress, keycode)
        self.d.xtest_fake_input(self.X.KeyRelease, keycode)
        return True

    def run(self, line: str) -> bool:
        """Carry out one command; False when told to quit."""
        X = self.X
        words = line.split()
        if not words:
            return True
        cmd, rest = words[0], words[1:]
        result: Any = True
        if cmd == "quit":
            return False
        if cmd == "map":
            result = self.map()
        elif cmd == "unmap":
            result = self.unmap()
        elif cmd == "raise":
            self.win.configure(stack_mode=X.Above)
        elif cmd == "focus":
            self.win.set_input_focus(X.RevertToParent, X.CurrentTime)
        elif cmd == "move":
            self.win.configure(x=int(rest[0]), y=int(rest[1]))
        elif cmd == "key":
            result = self.key(rest[0])
        elif cmd == "map-focus-key":
            result = self.map()
            self.win.set_input_focus(X.RevertToParent, X.CurrentTime)
            result = result and self.key(rest[0])
        elif cmd == "forge-active":
            self.root.change_property(
                self.d.intern_atom("_NET_ACTIVE_WINDOW"),
                self.Xatom.WINDOW,
                32,
                [int(rest[0], 0), 0],
            )
        elif cmd == "grab-keyboard":
            status = self.win.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
            result = status == X.GrabSuccess
        elif cmd == "popup-grab":
            px, py, pw, ph = (int(v) for v in rest[:4])
            popup = self.root.create_window(
                px, py, pw, ph, 0, self.d.screen().root_depth, X.InputOutput,
                X.CopyFromParent, background_pixel=0,
                override_redirect=True, event_mask=X.KeyPressMask,
            )  # fmt: skip
            popup.map()
            status = popup.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
            result = status == X.GrabSuccess
        elif cmd == "ungrab-keyboard":
            self.d.ungrab_keyboard(X.CurrentTime)
        elif cmd == "grab-pointer":
            status = self.win.grab_pointer(
                False,
                X.ButtonPressMask | X.ButtonReleaseMask,
                X.GrabModeAsync,
                X.GrabModeAsync,
                X.NONE,
                X.NONE,
                X.CurrentTime,
            )
            result = status == X.GrabSuccess
        elif cmd == "ungrab-pointer":
            self.d.ungrab_pointer(X.CurrentTime)
        else:
            result = f"unknown command {cmd!r}"
        self.d.sync()
        self.pump()
        self.done += 1
        self.result = result
        self.write_status()
        return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    window = _Window(args)
    control_fd = keep_open = -1
    if args.control is not None:
        # Our own writer keeps the FIFO from reading as EOF between test writes.
        control_fd = os.open(args.control, os.O_RDONLY | os.O_NONBLOCK)
        keep_open = os.open(args.control, os.O_WRONLY)
    if not args.unmapped and args.map_after is None:
        window.map()
    window.d.sync()
    window.write_status()
    map_at = None if args.map_after is None else time.monotonic() + args.map_after
    pending = b""
    fds = [window.d.fileno()] + ([control_fd] if control_fd >= 0 else [])
    running = True
    while running:
        timeout = None if map_at is None else max(0.0, map_at - time.monotonic())
        readable, _, _ = select.select(fds, [], [], timeout)
        window.pump()
        if map_at is not None and time.monotonic() >= map_at:
            map_at = None
            window.map()
            window.write_status()
        if control_fd in readable:
            with contextlib.suppress(BlockingIOError):
                pending += os.read(control_fd, 4096)
            while b"\n" in pending and running:
                line, pending = pending.split(b"\n", 1)
                running = window.run(line.decode("utf-8", "replace"))
    for fd in (control_fd, keep_open):
        if fd >= 0:
            os.close(fd)
    return 0


# -- the test side -------------------------------------------------------------


@dataclass
class XWindowProc:
    """A running ``xwindows`` process, driven through its control FIFO."""

    proc: Any  # subprocess.Popen[bytes]
    status_path: Path
    control_path: Path
    log_path: Path
    _sent: int = 0
    _status: dict[str, Any] = field(default_factory=dict)

    @property
    def window_id(self) -> int:
        return int(self.status()["window"])

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def status(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            self._status = json.loads(self.status_path.read_text(encoding="utf-8"))
        return self._status

    def send(self, command: str, timeout: float = 10.0) -> Any:
        """Send one command and wait until the window carried it out; its result."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"xwindows exited with {self.proc.returncode}")
        with self.control_path.open("w", encoding="utf-8") as fifo:
            fifo.write(command + "\n")
        self._sent += 1
        deadline = time.monotonic() + timeout
        while int(self.status().get("done", 0)) < self._sent:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError(f"xwindows did not carry out {command!r}")
            time.sleep(0.005)
        return self._status.get("result")

    def received(self) -> list[str]:
        """The key and button presses the window received so far."""
        try:
            return self.log_path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return []


def start_xwindow(
    desktop: Any,
    directory: Path,
    geometry: tuple[int, int, int, int],
    colour: tuple[int, int, int],
    *options: str | int,
) -> XWindowProc:
    """Start one window on ``desktop`` (a :class:`tests.desktop.Desktop`).

    Returns once it is mapped (and, unless override-redirect, managed by the
    window manager), or at once for ``--unmapped`` and ``--map-after``.
    """
    from tests.desktop import REPO_ROOT, DesktopError, wait_for

    n = len(list(directory.glob("xwindow-*.json")))
    status, control, log = (directory / f"xwindow-{n}.{ext}" for ext in ("json", "fifo", "log"))
    os.mkfifo(control)
    argv = [
        sys.executable, "-m", "tests.e2e.xwindows",
        "--geometry", ",".join(map(str, geometry)),
        "--colour", "".join(f"{c:02x}" for c in colour),
        "--status", str(status), "--control", str(control), "--log", str(log),
        *map(str, options),
    ]  # fmt: skip
    proc = desktop.spawn(argv, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    window = XWindowProc(proc, status, control, log)
    starts_mapped = "--unmapped" not in options and "--map-after" not in options

    def ready() -> bool:
        if proc.poll() is not None:
            raise DesktopError(f"xwindows exited: {desktop.log_of(proc)[-2000:]}")
        state = window.status()
        return bool(state) and (not starts_mapped or bool(state.get("mapped")))

    wait_for(ready, 10, interval=0.02, what="the xwindows window")
    if starts_mapped and "--override-redirect" not in options:
        wait_for(
            lambda: window.window_id in desktop._client_list(),
            5,
            what="the window manager to manage the xwindows window",
        )
    return window


if __name__ == "__main__":
    raise SystemExit(main())
