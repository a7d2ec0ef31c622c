"""The canary window on X11, drawn with python-xlib (no toolkit)."""

from __future__ import annotations

import contextlib
import os

from Xlib import X, Xatom, Xutil, display, error

from agent.events import Rect
from agent.sources.canary import CANARY_CLASS, CANARY_TITLE, Canary
from agent.sources.errors import NoDisplayError


class XorgCanary(Canary):
    def __init__(self, rect: Rect) -> None:
        try:
            self._display = display.Display(os.environ.get("DISPLAY"))
        except (error.DisplayError, error.ConnectionClosedError) as exc:
            raise NoDisplayError(f"cannot open the X display for the canary: {exc}") from exc
        screen = self._display.screen()
        self._root = screen.root
        self._window = self._root.create_window(
            rect.x,
            rect.y,
            rect.width,
            rect.height,
            0,
            screen.root_depth,
            X.InputOutput,
            X.CopyFromParent,
            background_pixel=screen.black_pixel,
            event_mask=X.StructureNotifyMask,
        )
        self.window_id = self._window.id
        self._closed = False
        self._window.set_wm_class(CANARY_CLASS, CANARY_CLASS)
        self._window.set_wm_name(CANARY_TITLE)
        self._window.change_property(
            self._display.intern_atom("_NET_WM_NAME"),
            self._display.intern_atom("UTF8_STRING"),
            8,
            CANARY_TITLE.encode(),
        )
        # Program-specified position and size, and no keyboard focus, please.
        self._window.set_wm_normal_hints(
            flags=Xutil.USPosition | Xutil.USSize | Xutil.PPosition | Xutil.PSize,
            x=rect.x,
            y=rect.y,
            width=rect.width,
            height=rect.height,
        )
        self._window.set_wm_hints(flags=Xutil.InputHint, input=0)
        self._window.change_property(
            self._display.intern_atom("_NET_WM_STATE"),
            Xatom.ATOM,
            32,
            [
                self._display.intern_atom("_NET_WM_STATE_SKIP_TASKBAR"),
                self._display.intern_atom("_NET_WM_STATE_ABOVE"),
            ],
        )
        self._window.map()
        self._display.sync()

    def geometry(self) -> Rect | None:
        if self._closed:
            return None
        try:
            attrs = self._window.get_attributes()
            if attrs.map_state != X.IsViewable:
                return None
            geom = self._window.get_geometry()
            origin = self._window.translate_coords(self._root, 0, 0)
        except (error.XError, error.ConnectionClosedError):
            return None
        return Rect(-origin.x, -origin.y, geom.width, geom.height)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(error.XError, error.ConnectionClosedError):
            self._window.destroy()
            self._display.sync()
        with contextlib.suppress(error.XError, error.ConnectionClosedError):
            self._display.close()
