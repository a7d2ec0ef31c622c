"""Window probe for Windows, on user32/kernel32 through ctypes.

UNTESTED HERE: written against the documented Win32 API (GetForegroundWindow,
GetWindowTextW, GetClassNameW, GetWindowThreadProcessId,
QueryFullProcessImageNameW, GetClientRect + ClientToScreen, WindowFromPoint +
GetAncestor(GA_ROOT), GetDpiForWindow); this project's tests run on X11 only.
ctypes' ``windll`` exists only on Windows, so everything OS-specific happens
in the constructor and methods, never at import.

Identity: ``process_name`` and ``exe_name`` are both the image base name
(``EXCEL.EXE``); ``wm_class`` holds the window class name (``XLMAIN``).
Coordinates are physical pixels when the process is per-monitor DPI aware
(the constructor asks for that; it is refused silently if the process already
chose), and ``scale`` is ``GetDpiForWindow / 96``.

Focus watching polls GetForegroundWindow (and the title) every
``poll_interval`` seconds on a thread; SetWinEventHook would need a message
loop on that thread, which is left for when this backend can be tested.

It answers none of the probe's questions about where input and pixels go
(``key_receiver``, ``pointer_receiver``, ``visible_region``...): the
interface's defaults say "not known", so nothing is captured on this
platform until they are written and tested.
"""

from __future__ import annotations

import contextlib
from typing import Any

from agent.events import AppIdentity, Rect, WindowInfo
from agent.sources.errors import BackendUnavailableError
from agent.sources.window import FocusCallback, PollingFocusWatch, Unsubscribe, WindowProbe

_GA_ROOT = 2
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
_DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2 = -4


class Win32WindowProbe(WindowProbe):
    """:class:`agent.sources.window.WindowProbe` on Win32 (untested here)."""

    def __init__(self, poll_interval: float = 0.25) -> None:
        try:
            import ctypes
            from ctypes import wintypes
        except ImportError as exc:  # pragma: no cover
            raise BackendUnavailableError(f"ctypes is unavailable: {exc}") from exc
        if not hasattr(ctypes, "windll"):
            raise BackendUnavailableError("the win32 window backend runs only on Windows")
        self._ctypes = ctypes
        self._wt = wintypes
        self._user32 = ctypes.windll.user32
        self._kernel32 = ctypes.windll.kernel32
        self._setup_prototypes()
        with contextlib.suppress(AttributeError, OSError):
            self._user32.SetProcessDpiAwarenessContext(
                ctypes.c_void_p(_DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2)
            )
        self._watch = PollingFocusWatch(self.active, poll_interval)

    def _setup_prototypes(self) -> None:
        wt, u, k = self._wt, self._user32, self._kernel32
        u.GetForegroundWindow.restype = wt.HWND
        u.GetWindowTextLengthW.argtypes = [wt.HWND]
        u.GetWindowTextW.argtypes = [wt.HWND, wt.LPWSTR, self._ctypes.c_int]
        u.GetClassNameW.argtypes = [wt.HWND, wt.LPWSTR, self._ctypes.c_int]
        u.GetWindowThreadProcessId.argtypes = [wt.HWND, self._ctypes.POINTER(wt.DWORD)]
        u.GetClientRect.argtypes = [wt.HWND, self._ctypes.POINTER(wt.RECT)]
        u.ClientToScreen.argtypes = [wt.HWND, self._ctypes.POINTER(wt.POINT)]
        u.WindowFromPoint.argtypes = [wt.POINT]
        u.WindowFromPoint.restype = wt.HWND
        u.GetAncestor.argtypes = [wt.HWND, wt.UINT]
        u.GetAncestor.restype = wt.HWND
        u.GetWindow.argtypes = [wt.HWND, wt.UINT]
        u.GetWindow.restype = wt.HWND
        u.IsWindowVisible.argtypes = [wt.HWND]
        u.IsWindow.argtypes = [wt.HWND]
        u.GetWindowRect.argtypes = [wt.HWND, self._ctypes.POINTER(wt.RECT)]
        k.OpenProcess.restype = wt.HANDLE
        k.OpenProcess.argtypes = [wt.DWORD, wt.BOOL, wt.DWORD]
        k.QueryFullProcessImageNameW.argtypes = [
            wt.HANDLE,
            wt.DWORD,
            wt.LPWSTR,
            self._ctypes.POINTER(wt.DWORD),
        ]
        k.CloseHandle.argtypes = [wt.HANDLE]

    # -- reading one window --------------------------------------------------

    def _image_name(self, pid: int) -> str:
        ctypes, wt = self._ctypes, self._wt
        handle = self._kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not handle:
            return ""  # access denied (elevated or protected process) or gone
        try:
            size = wt.DWORD(1024)
            buf = ctypes.create_unicode_buffer(size.value)
            if not self._kernel32.QueryFullProcessImageNameW(handle, 0, buf, ctypes.byref(size)):
                return ""
            return str(buf.value).replace("/", "\\").rsplit("\\", 1)[-1]
        finally:
            self._kernel32.CloseHandle(handle)

    def _describe(self, hwnd: Any) -> WindowInfo | None:
        ctypes, wt, u = self._ctypes, self._wt, self._user32
        if not hwnd or not u.IsWindow(hwnd):
            return None
        length = u.GetWindowTextLengthW(hwnd)
        title_buf = ctypes.create_unicode_buffer(length + 1)
        u.GetWindowTextW(hwnd, title_buf, length + 1)
        class_buf = ctypes.create_unicode_buffer(256)
        u.GetClassNameW(hwnd, class_buf, 256)
        pid = wt.DWORD(0)
        u.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
        rect = wt.RECT()
        origin = wt.POINT(0, 0)
        if not u.GetClientRect(hwnd, ctypes.byref(rect)) or not u.ClientToScreen(
            hwnd, ctypes.byref(origin)
        ):
            return None  # the window closed while we read it
        dpi = 96
        with contextlib.suppress(AttributeError, OSError):
            dpi = int(u.GetDpiForWindow(hwnd)) or 96
        image = self._image_name(pid.value) if pid.value else ""
        app = AppIdentity(process_name=image, wm_class=str(class_buf.value), exe_name=image)
        return WindowInfo(
            window_id=int(ctypes.cast(hwnd, ctypes.c_void_p).value or 0),
            app=app,
            title=str(title_buf.value),
            rect=Rect(int(origin.x), int(origin.y), int(rect.right), int(rect.bottom)),
            pid=int(pid.value) or None,
            scale=dpi / 96.0,
        )

    # -- WindowProbe ---------------------------------------------------------

    def active(self) -> WindowInfo | None:
        return self._describe(self._user32.GetForegroundWindow())

    def window_at(self, x: int, y: int) -> WindowInfo | None:
        hwnd = self._user32.WindowFromPoint(self._wt.POINT(x, y))
        if not hwnd:
            return None
        return self._describe(self._user32.GetAncestor(hwnd, _GA_ROOT))

    def subscribe(self, callback: FocusCallback) -> Unsubscribe:
        return self._watch.subscribe(callback)

    def close(self) -> None:
        self._watch.close()
