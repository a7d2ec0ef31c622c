"""What the sources hand to the pipeline: plain, immutable values.

This module owns the vocabulary shared by ``agent.sources`` (which produce
these values from the OS) and ``agent.pipeline`` (which gates, minimises and
batches them). It holds no behaviour beyond small geometry helpers and imports
nothing from the OS.

Times are wall-clock seconds since the epoch (float), read from the clock the
agent was built with, so that tests can inject their own.
Coordinates are screen pixels (physical), origin at the top left of the
virtual screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AppIdentity:
    """Who a window belongs to, as far as the platform can tell.

    Only ``exe_path`` and ``exe_sha256`` are facts the window's client cannot
    choose: on X11 the owning process comes from the server (X-Resource) and
    its executable from ``/proc/PID/exe``. WM_CLASS is whatever the client
    declares, and a process can rename itself (``/proc/PID/comm``); those are
    hints, matched only where a policy asks for them.
    """

    process_name: str = ""  # /proc/PID/comm, or the image name on Windows (self-declared)
    wm_instance: str = ""  # first part of WM_CLASS (client-declared)
    wm_class: str = ""  # second part of WM_CLASS (client-declared)
    exe_name: str = ""  # base name of the executable
    bundle_id: str = ""  # macOS bundle identifier
    #: Absolute path of the real executable ("" where unknown).
    exe_path: str = ""
    #: Lowercase hex SHA-256 of that executable, where the probe was asked to
    #: compute it (only for paths a policy pins with a digest); "" otherwise.
    exe_sha256: str = ""


@dataclass(frozen=True, slots=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    def contains(self, px: float, py: float) -> bool:
        return self.x <= px < self.x + self.width and self.y <= py < self.y + self.height

    def intersect(self, other: Rect) -> Rect | None:
        left, top = max(self.x, other.x), max(self.y, other.y)
        right = min(self.x + self.width, other.x + other.width)
        bottom = min(self.y + self.height, other.y + other.height)
        if right <= left or bottom <= top:
            return None
        return Rect(left, top, right - left, bottom - top)

    def translated(self, dx: int, dy: int) -> Rect:
        return Rect(self.x + dx, self.y + dy, self.width, self.height)


def subtract(region: list[Rect], hole: Rect) -> list[Rect]:
    """``region`` (disjoint rectangles) less ``hole``, still as disjoint rectangles."""
    out: list[Rect] = []
    for r in region:
        cut = r.intersect(hole)
        if cut is None:
            out.append(r)
            continue
        right, bottom = r.x + r.width, r.y + r.height
        cut_right, cut_bottom = cut.x + cut.width, cut.y + cut.height
        if cut.y > r.y:  # the band above the hole
            out.append(Rect(r.x, r.y, r.width, cut.y - r.y))
        if cut_bottom < bottom:  # the band below
            out.append(Rect(r.x, cut_bottom, r.width, bottom - cut_bottom))
        if cut.x > r.x:  # left of the hole, within its rows
            out.append(Rect(r.x, cut.y, cut.x - r.x, cut.height))
        if cut_right < right:  # right of the hole
            out.append(Rect(cut_right, cut.y, right - cut_right, cut.height))
    return out


def intersect_region(region: list[Rect], with_: list[Rect]) -> list[Rect]:
    """The parts of ``region`` inside ``with_`` (both lists of disjoint rectangles)."""
    out: list[Rect] = []
    for a in region:
        for b in with_:
            part = a.intersect(b)
            if part is not None:
                out.append(part)
    return out


@dataclass(frozen=True, slots=True)
class WindowInfo:
    """A top-level window: identity, title and client rectangle on screen."""

    window_id: int
    app: AppIdentity
    title: str
    rect: Rect
    pid: int | None = None
    scale: float = 1.0  # device pixel ratio of the monitor it is on


@dataclass(frozen=True, slots=True)
class MouseMove:
    t: float
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class MouseButton:
    t: float
    x: int
    y: int
    button: str  # "left", "middle", "right", "x1", ...
    pressed: bool
    #: The display server's timestamp of the event (X11: ms), where known.
    server_time: int | None = None


@dataclass(frozen=True, slots=True)
class MouseScroll:
    t: float
    x: int
    y: int
    dx: int
    dy: int
    #: The display server's timestamp of the event (X11: ms), where known.
    server_time: int | None = None


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A key press or release.

    ``key`` is a normalised name: for printable keys the character itself
    (``"a"``, ``"A"``, ``"1"``); otherwise a side-less name such as ``"ctrl"``,
    ``"shift"``, ``"alt"``, ``"cmd"``, ``"enter"``, ``"backspace"``, ``"tab"``,
    ``"space"``, ``"left"``, ``"f5"``. ``char`` is the text the key types, if
    any (``" "`` for space).
    """

    t: float
    key: str
    pressed: bool
    char: str | None = None
    #: The display server's timestamp of the event (X11: ms), where known.
    server_time: int | None = None


@dataclass(frozen=True, slots=True)
class FocusChange:
    """The active window changed (``window`` is None when nothing has focus)."""

    t: float
    window: WindowInfo | None


@dataclass(frozen=True, slots=True)
class Restacked:
    """Top-level windows were restacked, mapped, unmapped or reshaped."""

    t: float


@dataclass(frozen=True, slots=True)
class Gap:
    """Events were lost or not recorded: queue overflow, spool full, crash."""

    t: float
    reason: str
    count: int = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """Pixels of one window's client rectangle, grabbed from the screen.

    ``rgb`` holds ``width * height * 3`` bytes, row-major, no padding.
    ``rect`` is where the pixels came from, in screen coordinates (already
    clipped to the monitors).
    """

    t: float
    window_id: int
    rect: Rect
    width: int
    height: int
    rgb: bytes = field(repr=False)
    scale: float = 1.0


InputEvent = MouseMove | MouseButton | MouseScroll | KeyEvent
SourceEvent = InputEvent | FocusChange | Restacked | Gap
