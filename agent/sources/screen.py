"""Screen grabs of one window's client rectangle.

This module owns the :class:`ScreenGrabber` interface, the pure geometry that
decides which pixels a grab takes (:func:`grab_region`) and the choice of
backend (:func:`select_screen_grabber`: ``mss`` on every platform, ``fake``
for tests, ``OVERT_SCREEN_BACKEND`` overrides). It imports no OS library.

A grab never takes the full screen: only ``window.rect``, clipped to the
monitors. When a window spans several monitors, the grab takes only the part
on the monitor that holds most of the window's area (ties: the first monitor
in the platform's order). It does not composite across monitors: monitors can
differ in scale, and one frame has one scale and one rectangle. ``Frame.rect``
says where the pixels came from, so a consumer always knows what part of the
window it has.

A grab shows whatever is on screen in that rectangle, including windows
stacked above the target; :meth:`agent.sources.window.WindowProbe.visible_region`
says which parts are the window's own. What may be kept is decided downstream.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

from agent.events import Frame, Rect, WindowInfo
from agent.sources._platform import choose_backend
from agent.sources.errors import BackendUnavailableError


def grab_region(window: Rect, monitors: Sequence[Rect]) -> Rect | None:
    """The part of ``window`` to grab: its overlap with the monitor holding most of it.

    None when the window is on no monitor at all (off-screen or empty).
    """
    best: Rect | None = None
    best_area = 0
    for monitor in monitors:
        part = window.intersect(monitor)
        if part is None:
            continue
        area = part.width * part.height
        if area > best_area:
            best, best_area = part, area
    return best


class ScreenGrabber(abc.ABC):
    """Grabs the pixels of a window's client area as RGB."""

    @abc.abstractmethod
    def grab(self, window: WindowInfo, t: float) -> Frame | None:
        """A frame of ``window.rect`` clipped per :func:`grab_region`, stamped ``t``.

        None when no part of the window is on a monitor. ``Frame.rgb`` is
        ``width * height * 3`` bytes; ``Frame.width``/``height`` are physical
        pixels (on a HiDPI macOS display larger than ``Frame.rect``, which is
        in screen points), and ``Frame.scale`` is their ratio, or the
        window's scale where the platform reports pixels 1:1.
        """

    @abc.abstractmethod
    def monitors(self) -> list[Rect]:
        """The monitors, in screen coordinates, in the platform's order."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release OS resources. Call when no thread is grabbing any more."""

    def __enter__(self) -> ScreenGrabber:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


_SCREEN_BACKENDS = ("mss", "fake")


def select_screen_grabber(env: Mapping[str, str] | None = None) -> ScreenGrabber:
    """The screen grabber for this machine (``OVERT_SCREEN_BACKEND`` overrides)."""
    native = {"xorg": "mss", "win32": "mss", "darwin": "mss"}
    name = choose_backend("screen", _SCREEN_BACKENDS, env=env, native=native)
    if name == "mss":
        from agent.sources._mss import MssScreenGrabber

        return MssScreenGrabber()
    if name == "fake":
        from agent.sources._fake import FakeScreenGrabber

        return FakeScreenGrabber()
    raise BackendUnavailableError(f"unknown screen backend {name!r}")  # pragma: no cover
