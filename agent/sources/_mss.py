"""Screen grabber on mss (XShm/XGetImage on X11, GDI on Windows, CoreGraphics on macOS).

Owns the mss instances; imports mss (and Pillow) only when a grabber first
grabs. mss instances must not be shared between threads, so each thread that
grabs gets its own, made lazily on first use; :meth:`MssScreenGrabber.close`
closes them all and must only be called once grabbing has stopped.

The monitor list is read once per thread-local instance (mss caches it). When
a window lies on none of the monitors read, or a grab fails, the thread's
instance is made again, which reads the monitors again, and the grab is
tried once more: a monitor plugged in (a laptop docked) or unplugged since
is then seen. That happens at most once every ``REREAD_AFTER_S`` (5 s) per
thread, since each instance opens a display connection; a window that is
really off-screen costs one reconnection per interval, not one per grab.

BGRA → RGB goes through Pillow's C ``raw``/``BGRX`` decoder; without Pillow,
mss's own ``.rgb`` (byte slicing). The conversion, not the grab, is the cost
of a screenshot here (figures in BENCHMARKS.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from agent.events import Frame, Rect, WindowInfo
from agent.sources.errors import NO_X_DISPLAY, BackendUnavailableError, NoDisplayError, SourceError
from agent.sources.screen import ScreenGrabber, grab_region

REREAD_AFTER_S = 5.0


def _to_rgb(shot: Any) -> bytes:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is in the capture extra
        return bytes(shot.rgb)
    raw = getattr(shot, "raw", None)
    if raw is None:  # pragma: no cover - older mss
        raw = shot.bgra
    # frombuffer reads mss's buffer in place (no copy of the BGRA bytes).
    return Image.frombuffer("RGB", shot.size, raw, "raw", "BGRX", 0, 1).tobytes()


class MssScreenGrabber(ScreenGrabber):
    """:class:`agent.sources.screen.ScreenGrabber` on mss, one mss instance per thread."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._local = threading.local()
        self._instances: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._clock = clock

    def _sct(self) -> Any:
        sct = getattr(self._local, "sct", None)
        if sct is not None:
            return sct
        if self._closed:
            raise SourceError("screen grabber is closed")
        try:
            import mss
        except ImportError as exc:  # pragma: no cover - dependency of the capture extra
            raise BackendUnavailableError(
                "mss is not installed (pip install overt[capture])"
            ) from exc
        factory = getattr(mss, "MSS", None) or mss.mss
        try:
            sct = factory()
        except mss.ScreenShotError as exc:
            raise NoDisplayError(f"{NO_X_DISPLAY} ({exc})") from exc
        self._local.sct = sct
        with self._lock:
            self._instances.append(sct)
        return sct

    def monitors(self) -> list[Rect]:
        return [
            Rect(int(m["left"]), int(m["top"]), int(m["width"]), int(m["height"]))
            for m in self._sct().monitors[1:]
        ]

    def grab(self, window: WindowInfo, t: float) -> Frame | None:
        region = grab_region(window.rect, self.monitors())
        if region is None and self._reread_monitors():  # one plugged in since they were read?
            region = grab_region(window.rect, self.monitors())
        if region is None:
            return None
        import mss

        box = {"left": region.x, "top": region.y, "width": region.width, "height": region.height}
        try:
            shot = self._sct().grab(box)
        except mss.ScreenShotError as exc:
            if self._reread_monitors():  # one unplugged since they were read?
                return self.grab(window, t)  # once: the next reread is 5 s away
            raise SourceError(f"screen grab failed: {exc}") from exc
        width, height = shot.size
        scale = width / region.width if width != region.width else window.scale
        return Frame(
            t=t,
            window_id=window.window_id,
            rect=region,
            width=width,
            height=height,
            rgb=_to_rgb(shot),
            scale=scale,
        )

    def _reread_monitors(self) -> bool:
        """Close this thread's mss instance, so that the next one reads the
        monitors again; False (and nothing done) when it was done less than
        ``REREAD_AFTER_S`` ago on this thread."""
        now = self._clock()
        last = getattr(self._local, "reread_at", None)
        if last is not None and now - last < REREAD_AFTER_S:
            return False
        self._local.reread_at = now
        sct = getattr(self._local, "sct", None)
        if sct is not None:
            self._local.sct = None
            with self._lock:
                if sct in self._instances:
                    self._instances.remove(sct)
            sct.close()
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            instances, self._instances = self._instances, []
        for sct in instances:
            sct.close()
        self._local = threading.local()
