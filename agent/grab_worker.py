"""The grab thread: screenshot requests carried out off the pipeline thread.

This module owns ``overt-grab``, the thread that takes the latest screenshot
request and answers it with a frame of only what the window shows: it
re-reads the focused window, asks the probe for that window's own visible
region, grabs its client rectangle, keeps only that region (black
elsewhere), and skips the frame if anything changed on screen between the
question and the grab. A request for a window that no longer has focus is
stale and dropped. It decides nothing about capture: the pipeline thread
decides again for the window the frame comes with, and encodes it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from agent.events import Frame, WindowInfo
from agent.pipeline.occlusion import keep_visible
from agent.sources.errors import SourceError
from agent.sources.screen import ScreenGrabber
from agent.sources.window import WindowProbe

log = logging.getLogger(__name__)


class GrabWorker:
    """Carries out screenshot requests off the pipeline thread; the latest request wins."""

    def __init__(
        self,
        probe: WindowProbe,
        grabber: ScreenGrabber,
        clock: Callable[[], float],
        ready: Callable[[], None],
    ):
        self._probe = probe
        self._grabber = grabber
        self._clock = clock
        #: Called when a frame is ready, to wake the pipeline thread.
        self._ready = ready
        self._cond = threading.Condition()
        self._request: WindowInfo | None = None
        self._done: deque[tuple[Frame, WindowInfo]] = deque()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="overt-grab", daemon=True)
        self.failures = 0
        #: Frames thrown away because the screen changed while they were taken.
        self.skipped = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def request(self, window: WindowInfo) -> None:
        with self._cond:
            self._request = window
            self._cond.notify()

    def cancel(self) -> None:
        """Forget pending requests and grabbed frames (pause, hooks removed)."""
        with self._cond:
            self._request = None
            self._done.clear()

    def take(self) -> list[tuple[Frame, WindowInfo]]:
        with self._cond:
            out = list(self._done)
            self._done.clear()
            return out

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._request is None and not self._stopping:
                    self._cond.wait()
                wanted = self._request
                if self._stopping or wanted is None:
                    return
                self._request = None
            result = self._grab(wanted)
            if result is not None:
                with self._cond:
                    self._done.append(result)
                self._ready()

    def _grab(self, wanted: WindowInfo) -> tuple[Frame, WindowInfo] | None:
        try:
            # Only the focused window is grabbed, as it is now: if focus moved on
            # or the window went away, the request is stale.
            window = self._probe.active()
            if window is None or window.window_id != wanted.window_id:
                return None
            visible = self._probe.visible_region(window)
            if visible is None:
                return None  # not visible, or in doubt: no frame
            frame = self._grabber.grab(window, self._clock())
            if frame is None or not self._probe.unchanged_since(visible):
                # Something moved, mapped or reshaped while the pixels were taken.
                self.skipped += frame is not None
                return None
        except SourceError:
            self.failures += 1
            log.warning("screen grab failed (%d so far)", self.failures)
            return None
        return keep_visible(frame, visible.rects), window
