"""Window probe for X11 with an EWMH window manager, on python-xlib.

Owns the X connections of the probe; imports python-xlib only when a probe is
made. Tested on Xvfb with openbox.

What it reads, per window: ``_NET_WM_NAME`` (UTF-8) or else ``WM_NAME``;
``WM_CLASS`` (instance, class); ``_NET_WM_PID`` → ``/proc/PID/comm`` and the
base name of ``/proc/PID/exe`` (either may be unreadable: left empty); the
CLIENT window's size and its origin in root coordinates through
XTranslateCoordinates (``xdotool getwindowgeometry`` reports the frame offset
instead, which is not the area a screen grab should take).

Scale: X11 has no per-monitor device pixel ratio. ``scale`` is ``Xft.dpi /
96`` when the root window's ``RESOURCE_MANAGER`` sets ``Xft.dpi``, else 1.0,
read once when the probe is made.

Focus watching runs on its own thread with its own Display connection: it
selects PropertyNotify on the root (``_NET_ACTIVE_WINDOW``) and on the active
window (``_NET_WM_NAME`` / ``WM_NAME``, so title changes are reported too).
While focus moves the WM briefly sets the active window to 0; a 0 is reported
as None only if it lasts ``zero_grace`` seconds. Without
``_NET_ACTIVE_WINDOW`` support in ``_NET_SUPPORTED`` (or with
``use_events=False``) the watcher polls instead.

Windows vanish mid-query all the time (BadWindow, BadDrawable): such a query
answers None. A lost connection to the X server raises
:class:`agent.sources.errors.SourceError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from typing import Any

from agent.events import AppIdentity, Rect, WindowInfo
from agent.sources.errors import NO_X_DISPLAY, NoDisplayError, SourceError
from agent.sources.window import FocusCallback, FocusNotifier, Unsubscribe, WindowProbe

log = logging.getLogger(__name__)


def _proc_names(pid: int) -> tuple[str, str]:
    """(process name, exe base name) of a local pid; empty where unreadable."""
    comm = exe = ""
    with (
        contextlib.suppress(OSError, ValueError),
        open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f,
    ):
        comm = f.read().strip()
    with contextlib.suppress(OSError, ValueError):
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        exe = exe.removesuffix(" (deleted)")
    return comm, exe


def parse_xft_scale(resources: str) -> float:
    """``Xft.dpi / 96`` from an X resource database string, else 1.0."""
    for line in resources.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Xft.dpi":
            try:
                dpi = float(value.strip())
            except ValueError:
                return 1.0
            return dpi / 96.0 if dpi > 0 else 1.0
    return 1.0


class _Reader:
    """Queries on one X connection. Not thread-safe: one owner at a time."""

    def __init__(self, display_name: str | None) -> None:
        from Xlib import X, Xatom, display, error

        self.X = X
        self.error = error
        # Errors of requests without replies (change_attributes on a window
        # that just vanished) must not be printed to stderr.
        try:
            self.d = display.Display(display_name)
        except error.DisplayError as exc:
            raise NoDisplayError(f"{NO_X_DISPLAY} ({exc})") from exc
        self.d.set_error_handler(lambda *_: None)
        self.root = self.d.screen().root
        atom = self.d.intern_atom
        self.NET_ACTIVE_WINDOW = atom("_NET_ACTIVE_WINDOW")
        self.NET_WM_NAME = atom("_NET_WM_NAME")
        self.NET_WM_PID = atom("_NET_WM_PID")
        self.NET_CLIENT_LIST = atom("_NET_CLIENT_LIST")
        self.NET_CLIENT_LIST_STACKING = atom("_NET_CLIENT_LIST_STACKING")
        self.NET_SUPPORTED = atom("_NET_SUPPORTED")
        self.UTF8_STRING = atom("UTF8_STRING")
        self.WM_NAME = Xatom.WM_NAME
        self.WM_CLASS = Xatom.WM_CLASS
        self.RESOURCE_MANAGER = Xatom.RESOURCE_MANAGER
        self.scale = self._xft_scale()

    # Errors meaning "that window is gone": answer None.
    @property
    def gone(self) -> tuple[type[BaseException], ...]:
        return (self.error.BadWindow, self.error.BadDrawable, self.error.BadMatch)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.d.close()

    def _xft_scale(self) -> float:
        try:
            prop = self.root.get_full_property(self.RESOURCE_MANAGER, self.X.AnyPropertyType)
        except self.error.XError:
            return 1.0
        if prop is None or not isinstance(prop.value, bytes | str):
            return 1.0
        value = prop.value
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        return parse_xft_scale(text)

    def supports_active_window(self) -> bool:
        prop = self.root.get_full_property(self.NET_SUPPORTED, self.X.AnyPropertyType)
        return bool(prop is not None and self.NET_ACTIVE_WINDOW in prop.value)

    def active_id(self) -> int:
        prop = self.root.get_full_property(self.NET_ACTIVE_WINDOW, self.X.AnyPropertyType)
        if prop is None or not len(prop.value):
            return 0
        return int(prop.value[0])

    def stacking(self) -> list[int]:
        """Managed client windows, bottom to top."""
        for atom in (self.NET_CLIENT_LIST_STACKING, self.NET_CLIENT_LIST):
            prop = self.root.get_full_property(atom, self.X.AnyPropertyType)
            if prop is not None:
                return [int(w) for w in prop.value]
        return []

    def title(self, win: Any) -> str:
        prop = win.get_full_property(self.NET_WM_NAME, self.UTF8_STRING)
        if prop is not None and isinstance(prop.value, bytes):
            return str(prop.value.decode("utf-8", "replace"))
        prop = win.get_full_property(self.WM_NAME, self.X.AnyPropertyType)
        if prop is None:
            return ""
        value = prop.value
        if isinstance(value, str):
            return value
        if isinstance(value, bytes):
            encoding = "utf-8" if prop.property_type == self.UTF8_STRING else "latin-1"
            return value.decode(encoding, "replace")
        return ""

    def describe(self, wid: int) -> WindowInfo | None:
        if not wid:
            return None
        win = self.d.create_resource_object("window", wid)
        try:
            title = self.title(win)
            wm_class = win.get_wm_class() or ("", "")
            pid_prop = win.get_full_property(self.NET_WM_PID, self.X.AnyPropertyType)
            geometry = win.get_geometry()
            origin = self.root.translate_coords(win, 0, 0)
        except self.gone:
            return None
        pid = int(pid_prop.value[0]) if pid_prop is not None and len(pid_prop.value) else None
        comm, exe = _proc_names(pid) if pid else ("", "")
        app = AppIdentity(
            process_name=comm,
            wm_instance=str(wm_class[0] or ""),
            wm_class=str(wm_class[1] or ""),
            exe_name=exe,
        )
        rect = Rect(int(origin.x), int(origin.y), int(geometry.width), int(geometry.height))
        return WindowInfo(wid, app, title, rect, pid=pid, scale=self.scale)

    def frame_of(self, wid: int) -> int | None:
        """The ancestor of ``wid`` that is a child of the root (the WM frame)."""
        current = wid
        root_id = self.root.id
        for _ in range(16):
            tree = self.d.create_resource_object("window", current).query_tree()
            parent = int(tree.parent.id) if tree.parent else 0
            if parent in (0, root_id):
                return current
            current = parent
        return None

    def visible_rect(self, wid: int) -> Rect | None:
        """Outer rectangle (border included) of a root child, if it is viewable."""
        win = self.d.create_resource_object("window", wid)
        if win.get_attributes().map_state != self.X.IsViewable:
            return None
        g = win.get_geometry()
        border = 2 * int(g.border_width)
        return Rect(int(g.x), int(g.y), int(g.width) + border, int(g.height) + border)

    def pid_of(self, wid: int) -> int | None:
        prop = self.d.create_resource_object("window", wid).get_full_property(
            self.NET_WM_PID, self.X.AnyPropertyType
        )
        return int(prop.value[0]) if prop is not None and len(prop.value) else None


class XorgWindowProbe(WindowProbe):
    """:class:`agent.sources.window.WindowProbe` on X11 (python-xlib)."""

    def __init__(
        self,
        display_name: str | None = None,
        *,
        use_events: bool = True,
        poll_interval: float = 0.25,
        zero_grace: float = 0.15,
    ) -> None:
        try:
            import Xlib  # noqa: F401
        except ImportError as exc:  # pragma: no cover - dependency of the capture extra
            raise SourceError("python-xlib is not installed (pip install overt[capture])") from exc
        self._display_name = display_name
        self._reader = _Reader(display_name)
        self._lock = threading.Lock()
        self._notifier = FocusNotifier()
        self._use_events = use_events
        self._poll_interval = poll_interval
        self._zero_grace = zero_grace
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._closed = False

    # -- queries -------------------------------------------------------------

    def _query(self, fn: Any, *args: Any) -> Any:
        reader = self._reader
        with self._lock:
            if self._closed:
                raise SourceError("window probe is closed")
            try:
                return fn(*args)
            except reader.error.ConnectionClosedError as exc:
                raise SourceError(f"lost the X server connection: {exc}") from exc
            except reader.gone:
                return None

    def active(self) -> WindowInfo | None:
        reader = self._reader
        return self._query(lambda: reader.describe(reader.active_id()))  # type: ignore[no-any-return]

    def describe(self, window_id: int) -> WindowInfo | None:
        """One client window by X id (X11 only); None if it does not exist (any more)."""
        return self._query(self._reader.describe, window_id)  # type: ignore[no-any-return]

    def window_at(self, x: int, y: int) -> WindowInfo | None:
        reader = self._reader

        def find() -> WindowInfo | None:
            for wid in reversed(reader.stacking()):
                try:
                    frame = reader.frame_of(wid)
                    rect = reader.visible_rect(frame) if frame else None
                except reader.gone:
                    continue
                if rect is not None and rect.contains(x, y):
                    return reader.describe(wid)
            return None

        return self._query(find)  # type: ignore[no-any-return]

    def covering(self, window: WindowInfo) -> list[Rect]:
        reader = self._reader

        def above() -> list[Rect]:
            frame = reader.frame_of(window.window_id)
            if frame is None:
                return []
            clients = {}
            for wid in reader.stacking():
                with contextlib.suppress(*reader.gone):
                    owner = reader.frame_of(wid)
                    if owner is not None:
                        clients[owner] = wid
            children = [int(c.id) for c in reader.root.query_tree().children]
            if frame not in children:
                return []
            result = []
            for child in children[children.index(frame) + 1 :]:
                try:
                    rect = reader.visible_rect(child)
                    if rect is None:
                        continue
                    overlap = rect.intersect(window.rect)
                    if overlap is None:
                        continue
                    # The app's own popups (menus, drop-downs) are its content.
                    pid = reader.pid_of(clients.get(child, child))
                except reader.gone:
                    continue
                if window.pid is not None and pid == window.pid:
                    continue
                result.append(overlap)
            return result

        return self._query(above) or []

    # -- focus watching ----------------------------------------------------

    def subscribe(self, callback: FocusCallback) -> Unsubscribe:
        unsubscribe = self._notifier.add(callback)
        with self._lock:
            if self._closed:
                raise SourceError("window probe is closed")
            if self._watcher is None:
                self._wake_r, self._wake_w = os.pipe()
                ready = threading.Event()
                self._watcher = threading.Thread(
                    target=self._watch, args=(ready,), name="overt-focus-watch", daemon=True
                )
                self._watcher.start()
                ready.wait(5.0)
        return unsubscribe

    @property
    def watching(self) -> bool:
        return self._watcher is not None and self._watcher.is_alive()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watcher = self._watcher
        self._stop.set()
        if watcher is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            watcher.join(5.0)
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._reader.close()

    def _watch(self, ready: threading.Event) -> None:
        try:
            reader = _Reader(self._display_name)
        except SourceError:
            log.exception("focus watcher could not connect to the X server")
            ready.set()
            return
        try:
            if self._use_events and reader.supports_active_window():
                self._watch_events(reader, ready)
            else:
                self._watch_polling(reader, ready)
        except reader.error.ConnectionClosedError:
            log.error("focus watcher lost the X server connection")
        except Exception:
            log.exception("focus watcher failed")
        finally:
            ready.set()
            reader.close()

    def _watch_polling(self, reader: _Reader, ready: threading.Event) -> None:
        last: tuple[int, str] | None = None
        ready.set()
        while not self._stop.is_set():
            try:
                info = reader.describe(reader.active_id())
            except reader.gone:
                info = None
            key = (info.window_id, info.title) if info else (0, "")
            if key != last:
                last = key
                self._notifier.notify(info)
            self._stop.wait(self._poll_interval)

    def _watch_events(self, reader: _Reader, ready: threading.Event) -> None:
        X = reader.X
        d = reader.d
        reader.root.change_attributes(event_mask=X.PropertyChangeMask)
        watched = 0  # the window whose title changes we listen to
        last: tuple[int, str] | None = None
        zero_since: float | None = None
        dirty = True  # report the state at start, then on every change
        d.sync()
        ready.set()
        while not self._stop.is_set():
            if dirty:
                dirty = False
                active = reader.active_id()
                if active != watched:
                    if watched:
                        with contextlib.suppress(*reader.gone):
                            d.create_resource_object("window", watched).change_attributes(
                                event_mask=X.NoEventMask
                            )
                    watched = active
                    if active:
                        d.create_resource_object("window", active).change_attributes(
                            event_mask=X.PropertyChangeMask
                        )
                        d.flush()
                if active == 0:
                    zero_since = zero_since or time.monotonic()
                else:
                    zero_since = None
                    try:
                        info = reader.describe(active)
                    except reader.gone:
                        info = None
                    key = (info.window_id, info.title) if info else (0, "")
                    if key != last:
                        last = key
                        self._notifier.notify(info)
            if zero_since is not None:
                remaining = zero_since + self._zero_grace - time.monotonic()
                if remaining <= 0:
                    zero_since = None
                    if last != (0, ""):
                        last = (0, "")
                        self._notifier.notify(None)
                    timeout: float | None = None
                else:
                    timeout = remaining
            else:
                timeout = None
            if not d.pending_events():
                readable, _, _ = select.select([d.fileno(), self._wake_r], [], [], timeout)
                if self._wake_r in readable:
                    return
            for _ in range(d.pending_events()):
                event = d.next_event()
                if event.type != X.PropertyNotify:
                    continue
                window = int(event.window.id)
                focus_moved = window == reader.root.id and event.atom == reader.NET_ACTIVE_WINDOW
                renamed = window == watched and event.atom in (reader.NET_WM_NAME, reader.WM_NAME)
                dirty = dirty or focus_moved or renamed
