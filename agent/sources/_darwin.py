"""Window probe for macOS, on pyobjc (AppKit + Quartz).

UNTESTED HERE: written against the documented APIs
(``NSWorkspace.sharedWorkspace().frontmostApplication()``,
``CGWindowListCopyWindowInfo`` with ``kCGWindowListOptionOnScreenOnly``);
this project's tests run on X11 only. pyobjc is an optional dependency,
imported in the constructor, never at module import.

Identity: ``bundle_id`` from the running application, ``process_name`` its
localized name, ``exe_name`` the executable's base name. The window is the
frontmost layer-0 window of the frontmost application in the on-screen window
list (front to back). ``rect`` is ``kCGWindowBounds`` — in points, and it
includes the title bar (Quartz does not expose the content rectangle without
accessibility permission); ``scale`` is the backing scale factor of the main
screen. Reading window titles needs the Screen Recording permission on macOS
10.15+; without it titles are empty.

Focus watching polls every ``poll_interval`` seconds on a thread
(NSWorkspace notifications need a run loop).

It answers none of the probe's questions about where input and pixels go
(``key_receiver``, ``pointer_receiver``, ``visible_region``...): the
interface's defaults say "not known", so nothing is captured on this
platform until they are written and tested.
"""

from __future__ import annotations

import os
from typing import Any

from agent.events import AppIdentity, Rect, WindowInfo
from agent.sources.errors import BackendUnavailableError
from agent.sources.window import FocusCallback, PollingFocusWatch, Unsubscribe, WindowProbe


class DarwinWindowProbe(WindowProbe):
    """:class:`agent.sources.window.WindowProbe` on macOS (untested here)."""

    def __init__(self, poll_interval: float = 0.25) -> None:
        try:
            import AppKit
            import Quartz
        except ImportError as exc:
            raise BackendUnavailableError(
                "the macOS window backend needs pyobjc: "
                "pip install pyobjc-framework-Quartz pyobjc-framework-Cocoa"
            ) from exc
        self._appkit: Any = AppKit
        self._quartz: Any = Quartz
        self._watch = PollingFocusWatch(self.active, poll_interval)

    def _scale(self) -> float:
        screen = self._appkit.NSScreen.mainScreen()
        return float(screen.backingScaleFactor()) if screen is not None else 1.0

    def _windows(self) -> list[Any]:
        q = self._quartz
        options = q.kCGWindowListOptionOnScreenOnly | q.kCGWindowListExcludeDesktopElements
        return list(q.CGWindowListCopyWindowInfo(options, q.kCGNullWindowID) or [])

    def _app_for(self, pid: int) -> AppIdentity:
        app = self._appkit.NSRunningApplication.runningApplicationWithProcessIdentifier_(pid)
        if app is None:
            return AppIdentity()
        url = app.executableURL()
        return AppIdentity(
            process_name=str(app.localizedName() or ""),
            exe_name=os.path.basename(str(url.path())) if url is not None else "",
            bundle_id=str(app.bundleIdentifier() or ""),
        )

    def _info(self, entry: Any, scale: float) -> WindowInfo:
        q = self._quartz
        bounds = entry[q.kCGWindowBounds]
        pid = int(entry[q.kCGWindowOwnerPID])
        return WindowInfo(
            window_id=int(entry[q.kCGWindowNumber]),
            app=self._app_for(pid),
            title=str(entry.get(q.kCGWindowName, "") or ""),
            rect=Rect(
                int(bounds["X"]), int(bounds["Y"]), int(bounds["Width"]), int(bounds["Height"])
            ),
            pid=pid,
            scale=scale,
        )

    def active(self) -> WindowInfo | None:
        front = self._appkit.NSWorkspace.sharedWorkspace().frontmostApplication()
        if front is None:
            return None
        pid = int(front.processIdentifier())
        q = self._quartz
        for entry in self._windows():
            if int(entry[q.kCGWindowOwnerPID]) == pid and int(entry[q.kCGWindowLayer]) == 0:
                return self._info(entry, self._scale())
        return None

    def window_at(self, x: int, y: int) -> WindowInfo | None:
        q = self._quartz
        for entry in self._windows():  # front to back
            if int(entry[q.kCGWindowLayer]) != 0:
                continue
            b = entry[q.kCGWindowBounds]
            rect = Rect(int(b["X"]), int(b["Y"]), int(b["Width"]), int(b["Height"]))
            if rect.contains(x, y):
                return self._info(entry, self._scale())
        return None

    def subscribe(self, callback: FocusCallback) -> Unsubscribe:
        return self._watch.subscribe(callback)

    def close(self) -> None:
        self._watch.close()
