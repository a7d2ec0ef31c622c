"""Window probe for X11 with an EWMH window manager, on python-xlib.

Owns the X connections of the probe; imports python-xlib only when a probe is
made. Tested on Xvfb with openbox.

What it reads of one window, and how, is :mod:`agent.sources._xorg_reader`.

Where input and pixels go is answered by :mod:`agent.sources._xorg_view`, on
the probe's query connection: keys from the input focus and grabs at the
key's place in the server's event stream, clicks from the stacking of all the
root's children at the press, pixels from the window's unobscured, unshaped,
mapped region. The focus watcher's thread also takes in that connection's
events as they come, so the stacking it keeps is current.

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

from agent.events import (
    KeyEvent,
    MouseButton,
    MouseScroll,
    WindowInfo,
    intersect_region,
)
from agent.sources._xorg_reader import WindowReader
from agent.sources._xorg_view import ServerView
from agent.sources.errors import SourceError
from agent.sources.window import (
    FocusCallback,
    FocusNotifier,
    RestackCallback,
    Unsubscribe,
    Visibility,
    WindowProbe,
)

log = logging.getLogger(__name__)


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
        self._reader = WindowReader(display_name)
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
            reader = WindowReader(self._display_name)
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

    def _watch_polling(self, reader: WindowReader, ready: threading.Event) -> None:
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

    def _watch_events(self, reader: WindowReader, ready: threading.Event) -> None:
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
