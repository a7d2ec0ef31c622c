"""Reading one X window on one connection: identity, title, geometry, shape, tree.

This module owns the X11 probe's queries about a single window and the facts
behind them, on python-xlib (imported when a reader is made). It does not
watch focus or decide where input goes (:mod:`agent.sources._xorg` and
:mod:`agent.sources._xorg_view` do, on top of a reader); a reader is not
thread-safe, so each thread of the probe has its own.

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

Scale: X11 has no per-monitor device pixel ratio. ``scale`` is ``Xft.dpi /
96`` when the root window's ``RESOURCE_MANAGER`` sets ``Xft.dpi``, else 1.0,
read once when the reader is made.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

from agent.events import AppIdentity, Rect, WindowInfo
from agent.sources.errors import NO_X_DISPLAY, NoDisplayError


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


class WindowReader:
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
