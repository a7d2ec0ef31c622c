"""A real, private X desktop for tests: Xvfb + openbox (+ trayer), and helpers.

This module owns starting and stopping the processes of one throwaway desktop
and the small helpers tests use on it (``xdotool``, ``wmctrl``, ``wait_for``,
``find_window``, ``screenshot``, ``grab``, launching the test apps and any
other program, and what the X server itself says: a window's owning PID by
X-Resource, the input focus, whether another client holds a grab). It does
not own any pytest fixtures (those live in ``tests/e2e/conftest.py``) and it
never touches a display it did not start.

Guarantees:

- the display number is free when chosen (no ``/tmp/.X<n>-lock`` and no
  ``/tmp/.X11-unix/X<n>`` socket); if Xvfb still loses a race it is retried on
  the next number;
- teardown kills only the processes this module started (recorded PIDs), reaps
  them, and removes the display lock file if Xvfb left it behind;
- a missing program (Xvfb, openbox, trayer, xdotool, xdpyinfo) is an error
  that names the Debian package to install, never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "artifacts"
LOGS = ARTIFACTS / "desktop-logs"

SCREEN_WIDTH, SCREEN_HEIGHT = 1920, 1080

_PACKAGES = {
    "Xvfb": "xvfb",
    "openbox": "openbox",
    "trayer": "trayer",
    "xdotool": "xdotool",
    "xdpyinfo": "x11-utils",
    "wmctrl": "wmctrl",
    "dmenu": "suckless-tools",
    "i3lock": "i3lock",
    "xclock": "x11-apps",
    "xterm": "xterm",
    "wish": "tk",
    "chromium": "chromium",
}

T = TypeVar("T")


class DesktopError(RuntimeError):
    """The test desktop could not be started or a helper failed."""


def require_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = _PACKAGES.get(name, name)
        raise DesktopError(
            f"{name} is not installed: the desktop tests need it. "
            f"Install it with `apt-get install {package}` (or run `make test`, "
            "which installs the desktop packages)."
        )
    return path


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns a truthy value; return that value.

    Raises ``TimeoutError`` naming ``what`` if it never does. Exceptions from
    the predicate propagate (a broken predicate should fail loudly).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def free_display_number(start: int = 90, stop: int = 400) -> int:
    for number in range(start, stop):
        if Path(f"/tmp/.X{number}-lock").exists():
            continue
        if Path(f"/tmp/.X11-unix/X{number}").exists():
            continue
        return number
    raise DesktopError(f"no free X display number between :{start} and :{stop - 1}")


@dataclass
class AppWindow:
    """A test app process and its top-level (client) window id."""

    proc: subprocess.Popen[bytes]
    window_id: int
    wm_class: str


@dataclass
class Desktop:
    """A running private X desktop. Create it with :func:`start_desktop`."""

    display: str
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _lock_file: Path | None = None
    _logs: dict[int, Path] = field(default_factory=dict)
    _xlib: object | None = None  # Xlib.display.Display, opened lazily

    # -- processes ---------------------------------------------------------

    def spawn(
        self, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a process on this desktop and record it for teardown."""
        full_env = dict(os.environ if env is None else env)
        full_env["DISPLAY"] = self.display
        # stderr goes to a file, not a pipe: a chatty process must never block
        # on a full pipe nobody reads.
        LOGS.mkdir(parents=True, exist_ok=True)
        name = Path(argv[0]).name
        if "-m" in argv[1:-1]:
            name = argv[list(argv).index("-m") + 1]
        log = LOGS / f"{Path(name).name}-{time.time_ns()}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                list(argv),
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        self._procs.append(proc)
        self._logs[proc.pid] = log
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        """The stderr a spawned process wrote so far (for failure messages)."""
        log = self._logs.get(proc.pid)
        return log.read_text(errors="replace") if log and log.exists() else ""

    def kill(self, proc: subprocess.Popen[bytes], timeout: float = 3.0) -> None:
        """Stop one process this desktop started (TERM, then KILL) and reap it."""
        if proc.pid not in self._logs:
            raise DesktopError(f"pid {proc.pid} was not started by this desktop")
        if proc not in self._procs:
            return  # already stopped
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._procs.remove(proc)

    def close(self) -> None:
        """Kill every recorded process, newest first, and remove our lock."""
        if self._xlib is not None:
            with contextlib.suppress(Exception):
                self._xlib.close()  # type: ignore[attr-defined]
            self._xlib = None
        for proc in reversed(list(self._procs)):
            with contextlib.suppress(Exception):
                self.kill(proc)
        if self._lock_file is not None and self._lock_file.exists():
            with contextlib.suppress(OSError):
                self._lock_file.unlink()
        number = self.display.lstrip(":")
        socket = Path(f"/tmp/.X11-unix/X{number}")
        if self._lock_file is not None and socket.exists():
            with contextlib.suppress(OSError):
                socket.unlink()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    # -- helpers -------------------------------------------------------------

    def xdotool(self, *args: str | int, timeout: float = 10.0) -> str:
        """Run ``xdotool`` on this display; return its stdout (stripped)."""
        exe = require_program("xdotool")
        result = subprocess.run(
            [exe, *map(str, args)],
            env={**os.environ, "DISPLAY": self.display},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise DesktopError(
                f"xdotool {' '.join(map(str, args))} failed "
                f"({result.returncode}): {result.stderr.strip()}"
            )
        return result.stdout.strip()

    def x(self) -> Any:
        """A python-xlib Display on this desktop, for test-side queries."""
        if self._xlib is None:
            from Xlib import display as xdisplay

            self._xlib = xdisplay.Display(self.display)
        return self._xlib

    def find_window(self, wm_class: str, title: str | None = None) -> int | None:
        """The newest client window whose WM_CLASS (either part) is ``wm_class``.

        Searches ``_NET_CLIENT_LIST`` (managed windows only). ``title``, if
        given, must equal the window's ``_NET_WM_NAME``.
        """
        from Xlib import X, error

        d = self.x()
        root = d.screen().root
        prop = root.get_full_property(d.intern_atom("_NET_CLIENT_LIST"), X.AnyPropertyType)
        if prop is None:
            return None
        for wid in reversed(list(prop.value)):
            win = d.create_resource_object("window", wid)
            try:
                cls = win.get_wm_class()
                if not cls or wm_class not in cls:
                    continue
                if title is not None:
                    name = win.get_full_property(
                        d.intern_atom("_NET_WM_NAME"), d.intern_atom("UTF8_STRING")
                    )
                    got = name.value.decode("utf-8", "replace") if name else None
                    if got != title:
                        continue
                return int(wid)
            except error.XError:
                continue
        return None

    def active_window(self) -> int:
        from Xlib import X

        d = self.x()
        prop = d.screen().root.get_full_property(
            d.intern_atom("_NET_ACTIVE_WINDOW"), X.AnyPropertyType
        )
        return int(prop.value[0]) if prop and len(prop.value) else 0

    def screenshot(self, path: str | Path) -> Path:
        """Save the whole screen to a PNG (relative paths go under artifacts/)."""
        import mss
        import mss.tools

        target = Path(path)
        if not target.is_absolute():
            target = ARTIFACTS / target
        target.parent.mkdir(parents=True, exist_ok=True)
        factory = getattr(mss, "MSS", None) or mss.mss
        old = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = self.display
        try:
            with factory() as sct:
                shot = sct.grab(sct.monitors[0])
                mss.tools.to_png(shot.rgb, shot.size, output=str(target))
        finally:
            if old is None:
                os.environ.pop("DISPLAY", None)
            else:
                os.environ["DISPLAY"] = old
        return target

    def launch_app(
        self,
        module: str,
        wm_class: str,
        *args: str | int,
        timeout: float = 15.0,
    ) -> AppWindow:
        """Run ``python -m <module> <args>`` and wait for its window to be mapped.

        The window is recognised by its ``_NET_WM_PID``, not by being new: the X
        server reuses a departed client's id range, so a fresh app's window can
        carry the very id of one that was just killed and is still listed.
        """
        proc = self.spawn(
            [sys.executable, "-m", module, *map(str, args)],
            env={**os.environ, "QT_QPA_PLATFORM": "xcb", "PYTHONPATH": str(REPO_ROOT)},
        )

        from Xlib import X

        def appeared() -> int | None:
            if proc.poll() is not None:
                err = self.log_of(proc)
                raise DesktopError(f"{module} exited with {proc.returncode}: {err[-2000:]}")
            d = self.x()
            pid_atom = d.intern_atom("_NET_WM_PID")
            for wid in self._client_list():
                win = d.create_resource_object("window", wid)
                with contextlib.suppress(Exception):
                    cls = win.get_wm_class()
                    pid = win.get_full_property(pid_atom, X.AnyPropertyType)
                    if (
                        cls
                        and wm_class in cls
                        and pid is not None
                        and int(pid.value[0]) == proc.pid
                        and self._viewable(wid)
                    ):
                        return wid
            return None

        wid = wait_for(appeared, timeout, interval=0.05, what=f"{module} window")
        assert wid is not None
        return AppWindow(proc=proc, window_id=wid, wm_class=wm_class)

    def _client_list(self) -> list[int]:
        from Xlib import X

        d = self.x()
        prop = d.screen().root.get_full_property(
            d.intern_atom("_NET_CLIENT_LIST"), X.AnyPropertyType
        )
        return [int(w) for w in prop.value] if prop else []

    def _viewable(self, wid: int) -> bool:
        from Xlib import X

        win = self.x().create_resource_object("window", wid)
        return bool(win.get_attributes().map_state == X.IsViewable)

    def client_geometry(self, wid: int) -> tuple[int, int, int, int]:
        """(x, y, width, height) of a client window in root coordinates."""
        d = self.x()
        win = d.create_resource_object("window", wid)
        geo = win.get_geometry()
        pos = d.screen().root.translate_coords(win, 0, 0)
        return int(pos.x), int(pos.y), int(geo.width), int(geo.height)

    def selection_owner(self, name: str) -> int:
        d = self.x()
        owner = d.get_selection_owner(d.intern_atom(name))
        return int(getattr(owner, "id", owner))

    # -- what the X server says (for attack tests) --------------------------

    def launch_program(
        self,
        argv: Sequence[str],
        wm_class: str,
        *,
        env: dict[str, str] | None = None,
        title: str | None = None,
        timeout: float = 15.0,
    ) -> AppWindow:
        """Run any program and wait for its window to be mapped.

        Its window is the managed client with ``wm_class`` (either part) that
        the X server says the started process owns (X-Resource), so a program
        that sets no ``_NET_WM_PID``, or a false one, is still found.
        ``title``, if given, must equal the window's ``_NET_WM_NAME``.
        """
        proc = self.spawn(argv, env=env)

        def appeared() -> int | None:
            if proc.poll() is not None:
                err = self.log_of(proc)
                raise DesktopError(f"{argv[0]} exited with {proc.returncode}: {err[-2000:]}")
            for wid in reversed(self._client_list()):
                with contextlib.suppress(Exception):
                    win = self.x().create_resource_object("window", wid)
                    cls = win.get_wm_class()
                    if not cls or wm_class not in cls or self.owner_pid(wid) != proc.pid:
                        continue
                    if title is not None and self.title(wid) != title:
                        continue
                    if self._viewable(wid):
                        return wid
            return None

        wid = wait_for(appeared, timeout, interval=0.05, what=f"{Path(argv[0]).name} window")
        assert wid is not None
        return AppWindow(proc=proc, window_id=wid, wm_class=wm_class)

    def title(self, wid: int) -> str | None:
        d = self.x()
        win = d.create_resource_object("window", wid)
        name = win.get_full_property(d.intern_atom("_NET_WM_NAME"), d.intern_atom("UTF8_STRING"))
        return name.value.decode("utf-8", "replace") if name else None

    def find_titled(self, title: str) -> int | None:
        """The newest managed client window whose ``_NET_WM_NAME`` is ``title``."""
        for wid in reversed(self._client_list()):
            with contextlib.suppress(Exception):
                if self.title(wid) == title:
                    return wid
        return None

    def owner_pid(self, wid: int) -> int | None:
        """The PID of the client that created ``wid``, as the X server knows it."""
        from Xlib.ext import res

        d = self.x()
        reply = d.res_query_client_ids([{"client": wid, "mask": res.LocalClientPIDMask}])
        for value in reply.ids:
            if value.spec.mask == res.LocalClientPIDMask and len(value.value):
                return int(value.value[0])
        return None

    def input_focus(self) -> int:
        """The window that has the input focus (0 for None, 1 for PointerRoot)."""
        focus = self.x().get_input_focus().focus
        return int(getattr(focus, "id", focus))

    def viewable(self, wid: int) -> bool:
        from Xlib import error

        try:
            return self._viewable(wid)
        except error.XError:
            return False

    def grabbed_elsewhere(self, *, keyboard: bool = True) -> bool:
        """Whether another client holds an active keyboard (or pointer) grab.

        Asks by trying to grab it from the test's own connection: the server
        answers AlreadyGrabbed only when someone else holds it; a grab that
        succeeds is released at once.
        """
        from Xlib import X

        d = self.x()
        root = d.screen().root
        if keyboard:
            status = root.grab_keyboard(False, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
        else:
            status = root.grab_pointer(
                False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime
            )
        if status == X.GrabSuccess:
            if keyboard:
                d.ungrab_keyboard(X.CurrentTime)
            else:
                d.ungrab_pointer(X.CurrentTime)
            d.sync()
            return False
        return bool(status == X.AlreadyGrabbed)

    def grab(self, rect: tuple[int, int, int, int]) -> Any:
        """The screen's pixels in ``rect`` (x, y, width, height) as a PIL RGB image."""
        import mss
        from PIL import Image

        factory = getattr(mss, "MSS", None) or mss.mss
        x, y, w, h = rect
        with display_env(self.display), factory() as sct:
            shot = sct.grab({"left": x, "top": y, "width": w, "height": h})
            return Image.frombytes("RGB", shot.size, shot.rgb)

    def activate(self, wid: int, timeout: float = 5.0) -> None:
        """Activate a window through the WM and wait until it has the input focus."""
        self.xdotool("windowactivate", "--sync", wid)
        wait_for(
            lambda: self.input_focus() == wid or self._focus_inside(wid),
            timeout,
            interval=0.01,
            what=f"input focus on window {wid:#x}",
        )

    def _focus_inside(self, wid: int) -> bool:
        """Whether the input focus is ``wid`` or one of its descendants."""
        from Xlib import error

        current = self.input_focus()
        d = self.x()
        root = d.screen().root.id
        with contextlib.suppress(error.XError):
            for _ in range(16):
                if current in (0, 1, root):
                    return False
                if current == wid:
                    return True
                parent = d.create_resource_object("window", current).query_tree().parent
                current = int(getattr(parent, "id", parent or 0))
        return False

    def click(self, x: int, y: int, button: int = 1) -> None:
        # No --sync: it waits for a motion event, and there is none when the
        # pointer is already there. XTEST requests are handled in order anyway.
        self.xdotool("mousemove", x, y, "click", button)

    def wmctrl(self, *args: str | int, timeout: float = 10.0) -> str:
        """Run ``wmctrl`` (EWMH requests to the window manager) on this display."""
        exe = require_program("wmctrl")
        result = subprocess.run(
            [exe, *map(str, args)],
            env={**os.environ, "DISPLAY": self.display},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise DesktopError(f"wmctrl {' '.join(map(str, args))} failed: {result.stderr}")
        return result.stdout.strip()

    def net_wm_state(self, wid: int) -> list[str]:
        from Xlib import X

        d = self.x()
        prop = d.create_resource_object("window", wid).get_full_property(
            d.intern_atom("_NET_WM_STATE"), X.AnyPropertyType
        )
        return [d.get_atom_name(a) for a in prop.value] if prop else []


def _xdpyinfo(display: str) -> subprocess.CompletedProcess[str]:
    # capture_output reads all of it: no SIGPIPE, unlike `xdpyinfo | grep -q`.
    return subprocess.run(
        [require_program("xdpyinfo"), "-display", display, "-queryExtensions"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def _start_xvfb(desktop: Desktop, number: int, timeout: float) -> bool:
    """Start Xvfb on ``:number``; True once it answers, False if it lost a race."""
    display = f":{number}"
    proc = desktop.spawn(
        [
            require_program("Xvfb"),
            display,
            "-screen",
            "0",
            f"{SCREEN_WIDTH}x{SCREEN_HEIGHT}x24",
            "+extension",
            "RECORD",
            "+extension",
            "XTEST",
            "-nolisten",
            "tcp",
            "-noreset",
        ]
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            desktop.kill(proc)
            return False
        info = _xdpyinfo(display)
        if info.returncode == 0:
            if "RECORD" not in info.stdout:
                raise DesktopError("Xvfb started without the RECORD extension, which pynput needs")
            desktop._lock_file = Path(f"/tmp/.X{number}-lock")
            return True
        time.sleep(0.05)
    raise DesktopError(f"Xvfb on {display} did not answer within {timeout:.0f}s")


def start_desktop(timeout: float = 15.0) -> Desktop:
    """Start Xvfb on a free display and openbox on it; return the desktop."""
    for name in ("Xvfb", "openbox", "xdpyinfo", "xdotool"):
        require_program(name)
    desktop = Desktop(display="")
    try:
        number = free_display_number()
        for _attempt in range(5):
            desktop.display = f":{number}"
            if _start_xvfb(desktop, number, timeout):
                break
            number = free_display_number(number + 1)
        else:
            raise DesktopError("Xvfb kept losing the race for a free display number")
        desktop.spawn([require_program("openbox"), "--sm-disable"])
        wait_for(_wm_ready(desktop), timeout, interval=0.05, what="openbox to manage the screen")
    except BaseException:
        desktop.close()
        raise
    return desktop


def _wm_ready(desktop: Desktop) -> Callable[[], bool]:
    def ready() -> bool:
        from Xlib import X

        d = desktop.x()
        root = d.screen().root
        check = root.get_full_property(d.intern_atom("_NET_SUPPORTING_WM_CHECK"), X.AnyPropertyType)
        return bool(check and len(check.value) and check.value[0])

    return ready


def start_tray_host(desktop: Desktop, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start trayer; return once it owns the ``_NET_SYSTEM_TRAY_S0`` selection."""
    proc = desktop.spawn(
        [
            require_program("trayer"),
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "pixel",
            "--width",
            "120",
            "--height",
            "28",
            "--SetDockType",
            "true",
            "--transparent",
            "false",
        ]
    )

    def owned() -> bool:
        if proc.poll() is not None:
            raise DesktopError(f"trayer exited with {proc.returncode}")
        return desktop.selection_owner("_NET_SYSTEM_TRAY_S0") != 0

    wait_for(owned, timeout, interval=0.05, what="trayer to own _NET_SYSTEM_TRAY_S0")
    return proc


@contextlib.contextmanager
def display_env(display: str) -> Iterator[None]:
    """Set DISPLAY for this process, restoring the old value afterwards."""
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
