"""The records that go into a batch: what is left of events after minimisation.

This module owns the record vocabulary of body format 1 (``overt.wire.body``
packs it; a new record kind or field is a new body format). It holds no
behaviour: the agent's pipeline stages make records, the export reads them.

Conventions, shared by every record:

- ``t`` is wall-clock **milliseconds** since the epoch (an int), so records
  round-trip exactly through the body encoding.
- Coordinates are **window-relative** pixels (event x minus the window's x),
  except ``ContextRecord``, which states where the window itself is on screen.
- Nothing here names a key that was typed, except ``TextSpanRecord.text``
  (already redacted) and ``ShortcutRecord.key`` (a combo, an editing or
  navigation key, or a class token such as ``<letter>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TitleState(StrEnum):
    """What happened to a window title before it was recorded."""

    KEPT = "kept"
    MASKED = "masked"  # a title mask or a redaction replaced part of it
    DROPPED = "dropped"


class PathKind(StrEnum):
    DRAG = "drag"  # pointer moved while a button was held
    APPROACH = "approach"  # the last moments before a press
    HOVER = "hover"  # the pointer rested at one point


class ScreenshotKind(StrEnum):
    KEYFRAME = "keyframe"
    DELTA = "delta"


class MarkerKind(StrEnum):
    CONSENT = "consent"
    POLICY_CHANGE = "policy_change"
    PAUSE_START = "pause_start"
    PAUSE_END = "pause_end"
    GAP = "gap"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class ContextRecord:
    """The window in which the following records happened (emitted on change)."""

    t: int
    app_id: str
    title: str | None  # None when the title was dropped
    title_state: TitleState
    x: int  # window rectangle on screen
    y: int
    width: int
    height: int
    scale: float


@dataclass(frozen=True, slots=True)
class ClickRecord:
    t: int
    button: str
    pressed: bool
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class ScrollRecord:
    t: int
    x: int
    y: int
    dx: int
    dy: int


@dataclass(frozen=True, slots=True)
class MousePathRecord:
    """A coalesced pointer path, stored as deltas.

    The first sample is (``t``, ``x``, ``y``); sample *i* > 0 is the previous
    sample plus (``dt[i-1]`` ms, ``dx[i-1]``, ``dy[i-1]``). A hover has one
    sample. ``dwell_ms`` is how long the pointer rested at the last sample
    (before the press, for an approach; the rest itself, for a hover).
    """

    t: int
    kind: PathKind
    x: int
    y: int
    dt: tuple[int, ...]
    dx: tuple[int, ...]
    dy: tuple[int, ...]
    dwell_ms: int = 0

    @property
    def samples(self) -> int:
        return 1 + len(self.dt)

    def points(self) -> list[tuple[int, int, int]]:
        """The absolute samples (t, x, y)."""
        t, x, y = self.t, self.x, self.y
        out = [(t, x, y)]
        for a, b, c in zip(self.dt, self.dx, self.dy, strict=True):
            t, x, y = t + a, x + b, y + c
            out.append((t, x, y))
        return out


@dataclass(frozen=True, slots=True)
class TextSpanRecord:
    """Typed text between two boundaries, after redaction."""

    t: int  # first key of the span
    end: int  # last key of the span
    text: str
    redactions: int = 0  # how many matches were replaced by placeholders


@dataclass(frozen=True, slots=True)
class ShortcutRecord:
    """A key press in shortcuts (and text) mode: ``"ctrl+c"``, ``"enter"``, ``"<letter>"``."""

    t: int
    key: str


@dataclass(frozen=True, slots=True)
class KeyTimingRecord:
    """A key press or release, without the key's identity."""

    t: int
    pressed: bool


@dataclass(frozen=True, slots=True)
class ScreenshotRecord:
    """A screenshot of the captured window, as a keyframe or as changed tiles.

    ``image`` is the id of an image blob in the same batch. A keyframe's blob
    is the whole (downscaled) window. A delta's blob packs the changed tiles
    in a grid of ``tile``-pixel cells, ``columns`` cells wide, in the order of
    ``tiles`` (the (column, row) of each tile in the frame); edge tiles are
    cropped to the frame. A delta applies to the frame reassembled from the
    keyframe ``base`` and the deltas between them.
    """

    t: int
    kind: ScreenshotKind
    image: str
    width: int  # of the encoded frame (after downscaling)
    height: int
    source_width: int  # of the grabbed window
    source_height: int
    base: str | None = None  # keyframe image id, for a delta
    tile: int = 0
    columns: int = 0
    tiles: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class MarkerRecord:
    """Something about the recording itself (pause and resume carry no detail)."""

    t: int
    kind: MarkerKind
    detail: str = ""  # gap reason, consent answer, policy version
    count: int = 0  # gap: how many events were lost, when known


Record = (
    ContextRecord
    | ClickRecord
    | ScrollRecord
    | MousePathRecord
    | TextSpanRecord
    | ShortcutRecord
    | KeyTimingRecord
    | ScreenshotRecord
    | MarkerRecord
)


def to_ms(t: float) -> int:
    """Event seconds → record milliseconds."""
    return round(t * 1000.0)
