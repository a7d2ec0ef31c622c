"""Window probe for X11 with an EWMH window manager, on python-xlib.

Owns the X connections of the probe; imports python-xlib only when a probe is
made. Tested on Xvfb with openbox.

What it reads, per window: ``_NET_WM_NAME`` (UTF-8) or else ``WM_NAME``;
``WM_CLASS`` (instance, class); the PID of the client that owns the window as
the server knows it (X-Resource ``QueryClientIds``, which the client cannot
fake — ``_NET_WM_PID`` is whatever the client wrote, and is not used), then
``/proc/PID/exe`` (the real executable: its path, base name and, for paths a
policy pins, its SHA-256) and ``/proc/PID/comm``; the CLIENT window's size and
its origin in root coordinates through XTranslateCoordinates (``xdotool
getwindowgeometry`` reports the frame offset instead, which is not the area a
screen grab should take). Without X-Resource, or for a client on another
host, the PID is unknown and the identity holds only what the client declared.

Where input and pixels go is answered by :mod:`agent.sources._xorg_view`, on
the probe's query connection: keys from the input focus and grabs at the
key's place in the server's event stream, clicks from the stacking of all the
root's children at the press, pixels from the window's unobscured, unshaped,
mapped region. The focus watcher's thread also takes in that connection's
events as they come, so the stacking it keeps is current.

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
import hashlib
import logging
import os
import select
import threading
import time
from typing import Any

from agent.events import (
    AppIdentity,
    KeyEvent,
    MouseButton,
    MouseScroll,
    Rect,
    WindowInfo,
    intersect_region,
)
from agent.sources._xorg_view import ServerView
from agent.sources.errors import NO_X_DISPLAY, NoDisplayError, SourceError
from agent.sources.window import (
    FocusCallback,
    FocusNotifier,
    RestackCallback,
    Unsubscribe,
    Visibility,
    WindowProbe,
)

log = logging.getLogger(__name__)


def _process_identity(pid: int) -> tuple[str, str]:
    """(process name, real executable path) of a local pid; empty where unreadable.

    A replaced or deleted executable (``... (deleted)``) has no trustworthy
    path: it answers "".
    """
    comm = exe = ""
    with (
        contextlib.suppress(OSError, ValueError),
        open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f,
    ):
        comm = f.read().strip()
    with contextlib.suppress(OSError, ValueError):
        exe = os.readlink(f"/proc/{pid}/exe")
        if exe.endswith(" (deleted)") or not os.path.isabs(exe):
            exe = ""
    return comm, exe


class _Digests:
    """SHA-256 of executables, computed once per file version, only for chosen paths."""

    def __init__(self) -> None:
        self.paths: frozenset[str] = frozenset()
        self._cache: dict[tuple[str, int, int, int, int], str] = {}

    def of(self, pid: int, path: str) -> str:
        if path not in self.paths:
            return ""
        # Read through /proc/PID/exe: the very file the process runs, even if
        # the path was replaced since.
        source = f"/proc/{pid}/exe"
        try:
            st = os.stat(source)
        except OSError:
            return ""
        key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        digest = self._cache.get(key)
        if digest is None:
            try:
                with open(source, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError:
                return ""
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = digest
        return digest


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
        self.WM_STATE = atom("WM_STATE")
        self.NET_SUPPORTED = atom("_NET_SUPPORTED")
        self.UTF8_STRING = atom("UTF8_STRING")
        self.WM_NAME = Xatom.WM_NAME
        self.WM_CLASS = Xatom.WM_CLASS
        self.RESOURCE_MANAGER = Xatom.RESOURCE_MANAGER
        self.scale = self._xft_scale()
        self.has_xres = self.d.has_extension("X-Resource")
        self.has_shape = self.d.has_extension("SHAPE")
        self.digests = _Digests()

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

    def owner_pid(self, wid: int) -> int | None:
        """The PID of the client that created ``wid``, as the server knows it (X-Resource)."""
        if not self.has_xres:
            return None
        from Xlib.ext import res

        try:
            reply = self.d.res_query_client_ids([{"client": wid, "mask": res.LocalClientPIDMask}])
        except self.error.XError:
            return None
        for item in reply.ids:
            if item.spec.mask == res.LocalClientPIDMask and len(item.value):
                return int(item.value[0])
        return None

    def describe(self, wid: int) -> WindowInfo | None:
        if not wid:
            return None
        win = self.d.create_resource_object("window", wid)
        try:
            title = self.title(win)
            wm_class = win.get_wm_class() or ("", "")
            geometry = win.get_geometry()
            origin = self.root.translate_coords(win, 0, 0)
        except self.gone:
            return None
        pid = self.owner_pid(wid)
        comm, exe = _process_identity(pid) if pid else ("", "")
        app = AppIdentity(
            process_name=comm,
            wm_instance=str(wm_class[0] or ""),
            wm_class=str(wm_class[1] or ""),
            exe_name=os.path.basename(exe),
            exe_path=exe,
            exe_sha256=self.digests.of(pid, exe) if pid and exe else "",
        )
        rect = Rect(int(origin.x), int(origin.y), int(geometry.width), int(geometry.height))
        return WindowInfo(wid, app, title, rect, pid=pid, scale=self.scale)

    def client_rect(self, wid: int) -> Rect | None:
        """Where a window's inside is in root coordinates, if it is viewable."""
        win = self.d.create_resource_object("window", wid)
        if win.get_attributes().map_state != self.X.IsViewable:
            return None
        geometry = win.get_geometry()
        origin = self.root.translate_coords(win, 0, 0)
        return Rect(int(origin.x), int(origin.y), int(geometry.width), int(geometry.height))

    def bounding_shape(self, wid: int, rect: Rect) -> list[Rect] | None:
        """A shaped window's bounding region in root coordinates; None if it is not shaped."""
        if not self.has_shape:
            return None
        win = self.d.create_resource_object("window", wid)
        if not win.shape_query_extents().bounding_shaped:
            return None
        reply = win.shape_get_rectangles(0)
        return [
            Rect(int(r.x) + rect.x, int(r.y) + rect.y, int(r.width), int(r.height))
            for r in reply.rectangles
        ]

    def toplevel_of(self, wid: int) -> int | None:
        """The ancestor of ``wid`` that is a child of the root (the WM frame, or itself)."""
        current = wid
        root_id = self.root.id
        for _ in range(16):
            tree = self.d.create_resource_object("window", current).query_tree()
            parent = int(tree.parent.id) if tree.parent else 0
            if parent == 0:
                return None
            if parent == root_id:
                return current
            current = parent
        return None

    def client_in(self, top: int) -> int:
        """The client window inside root child ``top``: the one with WM_STATE, else ``top``."""
        pending = [top]
        for _ in range(3):  # WM_STATE sits at most a few levels down a frame
            deeper: list[int] = []
            for wid in pending:
                win = self.d.create_resource_object("window", wid)
                if win.get_full_property(self.WM_STATE, self.X.AnyPropertyType) is not None:
                    return wid
                deeper.extend(int(c.id) for c in win.query_tree().children)
            pending = deeper
        return top

    def owns(self, client: int, wid: int) -> bool:
        """Whether ``wid`` is ``client`` or lies inside it."""
        current = wid
        for _ in range(16):
            if current == client:
                return True
            tree = self.d.create_resource_object("window", current).query_tree()
            parent = int(tree.parent.id) if tree.parent else 0
            if parent in (0, self.root.id):
                return False
            current = parent
        return False


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
        self._view: ServerView | None = None
        try:
            self._view = ServerView(self._reader)
        except (RuntimeError, self._reader.error.XError) as exc:
            # Without the view no key, click or frame can be placed: all are dropped.
            log.error("the X server cannot say where input goes (%s); nothing is captured", exc)
        self._clients: dict[int, int] = {}
        self._toplevels: dict[int, int] = {}
        self._watched_clients: set[int] = set()
        self._restack: list[RestackCallback] = []
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
        def find() -> WindowInfo | None:
            view = self._settled_view()
            if view is None:
                return None
            top = view.stack.top_at(x, y)
            return None if top is None else self._reader.describe(self._client_in(top.window_id))

        return self._query(find)  # type: ignore[no-any-return]

    # -- where input and pixels go -------------------------------------------

    def _settled_view(self) -> ServerView | None:
        view = self._view
        if view is None:
            return None
        view.drain()
        if view.stack.dirty:
            view.reload()
        return view

    def _client_in(self, top: int) -> int:
        client = self._clients.get(top)
        if client is None:
            client = self._reader.client_in(top)
            if len(self._clients) > 4096:
                self._clients.clear()
            self._clients[top] = client
        return client

    def _toplevel_of(self, wid: int) -> int | None:
        view = self._view
        top = self._toplevels.get(wid)
        if top is None or view is None or top not in view.stack.windows:
            top = self._reader.toplevel_of(wid)
            if top is None:
                return None
            if len(self._toplevels) > 4096:
                self._toplevels.clear()
            self._toplevels[wid] = top
        return top

    def key_receiver(self, event: KeyEvent) -> int | None:
        if event.server_time is None:
            return None

        def find() -> int | None:
            view = self._view
            if view is None:
                return None
            target = view.key_focus(event.server_time or 0)
            if target is None:
                return None
            if target.grab_window is not None:
                # A grab: keys went to the grab window's client, and that
                # window is judged like any other (a locker's is not allowed,
                # the work app's own drop-down is).
                holder = self._toplevel_of(target.grab_window)
                return None if holder is None else self._client_in(holder)
            focus = target.focus
            top = self._toplevel_of(focus)
            if top is None:
                return None
            client = self._client_in(top)
            # Focus on the frame or a window beside the client (the WM's own)
            # is not the client's.
            return client if self._reader.owns(client, focus) else None

        return self._query(find)  # type: ignore[no-any-return]

    def pointer_receiver(self, event: MouseButton | MouseScroll) -> int | None:
        if event.server_time is None:
            return None

        def find() -> int | None:
            view = self._view
            if view is None:
                return None
            top = view.pointer_top(event.x, event.y, event.server_time or 0, self._same_process)
            return None if top is None else self._client_in(top.window_id)

        return self._query(find)  # type: ignore[no-any-return]

    def _same_process(self, top: int, window_id: int) -> bool:
        """Whether ``window_id`` belongs to the process behind root child ``top``'s client."""
        reader = self._reader
        try:
            mine = reader.owner_pid(self._client_in(top))
            theirs = reader.owner_pid(window_id)
        except reader.gone:
            return False
        return mine is not None and mine == theirs

    def shows(self, window_id: int, x: int, y: int) -> bool:
        def check() -> bool:
            view = self._view
            if view is None or view.stack.dirty:
                return False
            top = self._toplevel_of(window_id)
            at = view.stack.top_at(x, y)
            return at is not None and top == at.window_id

        return bool(self._query(check))

    def visible_region(self, window: WindowInfo) -> Visibility | None:
        reader = self._reader

        def find() -> Visibility | None:
            view = self._settled_view()
            if view is None:
                return None
            wid = window.window_id
            top = self._toplevel_of(wid)
            if top is None:
                return None
            rect = reader.client_rect(wid)  # None when unmapped (a shaded window, say)
            if rect is None or rect != window.rect:
                return None  # moved or resized since it was described: in doubt
            self._watch_client(wid)
            region = view.stack.visible_part(top, rect)
            if not region:
                return None
            shape = reader.bounding_shape(wid, rect)
            if shape is not None:
                region = intersect_region(region, shape)
            view.drain()
            return Visibility(tuple(region), view.stack.generation) if region else None

        return self._query(find)  # type: ignore[no-any-return]

    def unchanged_since(self, visibility: Visibility) -> bool:
        def check() -> bool:
            view = self._view
            if view is None:
                return False
            # A round trip first: every change the server made before it is then here.
            self._reader.d.get_input_focus()
            view.drain()
            return not view.changed_since(visibility.stamp)

        return bool(self._query(check))

    def _watch_client(self, wid: int) -> None:
        """Hear about the client's own moves, unmaps and reshapes inside its frame."""
        if wid in self._watched_clients:
            return
        reader = self._reader
        X = reader.X
        win = reader.d.create_resource_object("window", wid)
        # One event mask per window and connection: an unmanaged client is
        # also a root child the view watches for focus and crossings.
        win.change_attributes(
            event_mask=X.StructureNotifyMask
            | X.FocusChangeMask
            | X.EnterWindowMask
            | X.LeaveWindowMask
        )
        if len(self._watched_clients) > 4096:
            self._watched_clients.clear()
        if reader.has_shape:
            win.shape_select_input(1)
        self._watched_clients.add(wid)

    def set_digest_paths(self, paths: frozenset[str]) -> None:
        with self._lock:
            self._reader.digests.paths = frozenset(paths)

    def subscribe_restack(self, callback: RestackCallback) -> Unsubscribe:
        with self._lock:
            self._restack.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._restack:
                    self._restack.remove(callback)

        return remove

    def _take_view_events(self) -> None:
        """Take in the query connection's events (the watcher thread, when they arrive)."""
        with self._lock:
            view = self._view
            if view is None or self._closed:
                return
            before = view.stack.generation
            try:
                view.drain()
            except self._reader.gone:
                return
            callbacks = list(self._restack) if view.stack.generation != before else []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("restack callback %r failed", callback)

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
            # One digest cache and one list of pinned paths for both connections.
            reader.digests = self._reader.digests
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
            view_fd = self._reader.d.fileno()
            readable, _, _ = select.select([self._wake_r, view_fd], [], [], self._poll_interval)
            if self._wake_r in readable:
                return
            if view_fd in readable:
                self._take_view_events()

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
                view_fd = self._reader.d.fileno()
                readable, _, _ = select.select([d.fileno(), self._wake_r, view_fd], [], [], timeout)
                if self._wake_r in readable:
                    return
                if view_fd in readable:
                    self._take_view_events()
            for _ in range(d.pending_events()):
                event = d.next_event()
                if event.type != X.PropertyNotify:
                    continue
                window = int(event.window.id)
                focus_moved = window == reader.root.id and event.atom == reader.NET_ACTIVE_WINDOW
                renamed = window == watched and event.atom in (reader.NET_WM_NAME, reader.WM_NAME)
                dirty = dirty or focus_moved or renamed
