"""Screenshots: when to grab a window, and how little of it to keep.

This module owns two things:

- ``ScreenshotScheduler`` decides *when* the captured window should be
  grabbed. Triggers: a mouse press and a focus change (at once), a typing
  pause (``typing_pause_s`` after the last key) and a scroll stop
  (``scroll_stop_s`` after the last scroll). Rate limits come from the
  decision's ``Screenshots``: at least ``min_interval_seconds`` between grabs
  and at most ``max_per_minute`` in any 60 s. A trigger that arrives while
  rate-limited is deferred to the earliest allowed time; one request is
  pending at most (a later trigger replaces it), so a burst of clicks yields
  one grab of the state after the burst. It returns ``GrabRequest`` values;
  grabbing is the app's job (off the input thread).

- ``FrameEncoder`` turns grabbed ``Frame``s into screenshot records and image
  blobs. It downscales to ``max_width``, skips a frame identical to the
  previous one, and otherwise emits a keyframe or a delta.

Which codec encodes each image is :mod:`agent.pipeline.codecs`; the delta
packing and its reassembly are the wire format's (:mod:`overt.wire.frames`).
Frames (``ScreenshotRecord`` explains the record fields):

- keyframe: the whole downscaled window as one image.
- delta: the changed ``tile`` x ``tile`` (16 px) cells, compared against the
  previous frame of the same window, packed left to right and top to bottom
  into one image of ``columns`` (at most 16) cells per row, its codec chosen
  the same way. Edge cells are cropped to the frame. Apply a chain's deltas
  in order to its keyframe (``reassemble``); the delta's ``base`` names the
  keyframe. ``tile`` must be a product of factors of at most 16 (the tile
  size is measured in ``bench/tile_size.py``).
- chains: the encoder keeps one chain per window (the ``max_windows`` most
  recently encoded), so focus going back to a window continues its chain;
  chains of two windows may interleave in one batch. The first frame after
  ``focus_changed`` (or of another window than the last one encoded) is
  never skipped: when unchanged it is a delta of one tile (the top left), so
  a screenshot record still follows the switch. Other unchanged frames are
  skipped.
- a keyframe (not a delta) is emitted for a window's first frame, after
  ``force_keyframe`` (the pipeline calls it when a batch was emitted or
  dropped, so every chain stays within one batch), when the window's size
  changed, when more than ``max_changed`` of the tiles changed, and after
  ``keyframe_every`` deltas of the chain. A focus change alone does not
  start a keyframe.

Neither class reads a clock or starts a thread. ``FrameEncoder`` is a plain
object; the app calls it from a worker thread, never from an input hook.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image, ImageChops

from agent.events import Frame, WindowInfo
from overt.wire.errors import FrameError
from overt.wire.frames import image_id, tile_runs
from overt.wire.records import ScreenshotKind, ScreenshotRecord, to_ms
from policies.model import Screenshots

from .codecs import CodecChooser


class Trigger(StrEnum):
    PRESS = "press"
    FOCUS = "focus"
    TYPING_PAUSE = "typing_pause"
    SCROLL_STOP = "scroll_stop"


@dataclass(frozen=True, slots=True)
class GrabRequest:
    """Grab this window's client rectangle now."""

    window: WindowInfo
    trigger: Trigger
    t: float


@dataclass(slots=True)
class _Pending:
    due: float
    trigger: Trigger
    window: WindowInfo
    settings: Screenshots


class ScreenshotScheduler:
    """Decides when to grab; holds at most one pending request."""

    __slots__ = ("_grabs", "_pending", "_scroll_stop", "_typing_pause")

    def __init__(self, *, typing_pause_s: float = 0.5, scroll_stop_s: float = 0.3) -> None:
        self._typing_pause = typing_pause_s
        self._scroll_stop = scroll_stop_s
        self._grabs: deque[float] = deque()
        self._pending: _Pending | None = None

    @property
    def next_due(self) -> float | None:
        return None if self._pending is None else self._pending.due

    def trigger(
        self, trigger: Trigger, window: WindowInfo, settings: Screenshots | None, now: float
    ) -> GrabRequest | None:
        """An immediate trigger (press, focus change): grab now, or defer if rate-limited."""
        return self._schedule(trigger, window, settings, now, now)

    def typing(
        self, window: WindowInfo, settings: Screenshots | None, now: float
    ) -> GrabRequest | None:
        """A key was typed: grab when typing pauses."""
        return self._schedule(Trigger.TYPING_PAUSE, window, settings, now, now + self._typing_pause)

    def scrolled(
        self, window: WindowInfo, settings: Screenshots | None, now: float
    ) -> GrabRequest | None:
        """A scroll happened: grab when scrolling stops."""
        return self._schedule(Trigger.SCROLL_STOP, window, settings, now, now + self._scroll_stop)

    def poll(self, now: float) -> GrabRequest | None:
        """A pending request that is due at ``now``."""
        p = self._pending
        if p is None or now < p.due:
            return None
        allowed = self._allowed_at(p.settings, now)
        if now < allowed:
            p.due = allowed
            return None
        self._pending = None
        return self._grant(p.trigger, p.window, now)

    def cancel(self) -> None:
        """Forget a pending request (capture stopped, focus moved, pause)."""
        self._pending = None

    def _schedule(
        self,
        trigger: Trigger,
        window: WindowInfo,
        settings: Screenshots | None,
        now: float,
        due: float,
    ) -> GrabRequest | None:
        if settings is None or not settings.enabled:
            self._pending = None
            return None
        due = max(due, self._allowed_at(settings, now))
        if due <= now:
            self._pending = None
            return self._grant(trigger, window, now)
        self._pending = _Pending(due, trigger, window, settings)
        return None

    def _allowed_at(self, settings: Screenshots, now: float) -> float:
        grabs = self._grabs
        while grabs and grabs[0] <= now - 60.0:
            grabs.popleft()
        if not grabs:
            return now
        allowed = grabs[-1] + settings.min_interval_seconds
        if len(grabs) >= settings.max_per_minute:
            allowed = max(allowed, grabs[-settings.max_per_minute] + 60.0)
        return allowed

    def _grant(self, trigger: Trigger, window: WindowInfo, now: float) -> GrabRequest:
        self._grabs.append(now)
        return GrabRequest(window, trigger, now)


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A screenshot record and the image blob it names."""

    record: ScreenshotRecord
    image: bytes


@dataclass(slots=True)
class _Chain:
    """One window's keyframe and the deltas after it, as the encoder last left them."""

    prev: Image.Image  # the last frame emitted, downscaled
    source: tuple[int, int]  # its size as grabbed
    key_id: str
    deltas: int


class FrameEncoder:
    """Downscales, skips unchanged frames, emits keyframes and tile deltas.

    It keeps one chain (keyframe, deltas) per window, for the ``max_windows``
    windows most recently encoded, so going back to a window whose chain is
    still held continues that chain. ``force_keyframe`` drops every chain:
    the pipeline calls it when a batch was emitted or dropped, so a delta
    never refers to a keyframe outside its own batch.

    Not thread-safe: one worker thread uses it at a time. ``force_keyframe``
    and ``focus_changed`` only set a flag and may be called from another
    thread.
    """

    def __init__(
        self,
        *,
        tile: int = 16,
        max_changed: float = 0.5,
        keyframe_every: int = 30,
        max_windows: int = 4,
        codec: CodecChooser | None = None,
    ) -> None:
        self.codec = codec if codec is not None else CodecChooser()
        self._steps = _shrink_steps(tile)
        self.tile = tile
        self.max_changed = max_changed
        self.keyframe_every = keyframe_every
        self.max_windows = max_windows
        #: Chains by window id, least recently encoded first.
        self._chains: OrderedDict[int, _Chain] = OrderedDict()
        #: The last window encoded, and its last frame as grabbed (before
        #: downscaling) for the cheap change check; kept for that window only.
        self._window = -1
        self._prev_source: Image.Image | None = None
        self._force = True
        self._focused = False
        self.skipped = 0

    def force_keyframe(self) -> None:
        """Start every window's next screenshot with a keyframe (a new batch)."""
        self._force = True

    def focus_changed(self) -> None:
        """Give the next frame a record even when it is unchanged (focus came back)."""
        self._focused = True

    def encode(self, frame: Frame, settings: Screenshots) -> EncodedFrame | None:
        """The record and blob for a frame, or None when it is unchanged."""
        if (
            frame.width <= 0
            or frame.height <= 0
            or len(frame.rgb) != frame.width * frame.height * 3
        ):
            raise FrameError(
                f"frame of {frame.width}x{frame.height} has {len(frame.rgb)} bytes of pixels"
            )
        self.codec.start_frame(frame.width * frame.height)
        if self._force:
            self._chains.clear()
            self._force = False
        grabbed = Image.frombytes("RGB", (frame.width, frame.height), frame.rgb)
        returned = frame.window_id != self._window or self._focused
        self._focused = False
        prev_source = None if returned else self._prev_source
        self._window, self._prev_source = frame.window_id, grabbed
        if frame.width > settings.max_width:
            h = max(1, round(frame.height * settings.max_width / frame.width))
            size = (settings.max_width, h)
        else:
            size = (frame.width, frame.height)
        chain = self._chains.get(frame.window_id)
        if (
            chain is None
            or chain.prev.size != size
            or chain.source != (frame.width, frame.height)
            or chain.deltas >= self.keyframe_every
        ):
            return self._keyframe(frame, _downscale(grabbed, size), settings)
        self._chains.move_to_end(frame.window_id)
        # Unchanged pixels are found before downscaling, which costs more than the check.
        if (
            prev_source is not None
            and prev_source.size == grabbed.size
            and ImageChops.difference(prev_source, grabbed).getbbox() is None
        ):
            self.skipped += 1
            return None
        img = _downscale(grabbed, size)
        diff = ImageChops.difference(chain.prev, img)
        bbox = diff.getbbox()
        if bbox is None:
            if not returned:
                self.skipped += 1
                return None
            # Focus came back to a window that did not change while away: one
            # tile says which chain is on screen now, for a fraction of a keyframe.
            return self._delta(frame, img, settings, chain, [(0, 0)])
        tiles = self._changed_tiles(diff, bbox)
        total = math.ceil(img.width / self.tile) * math.ceil(img.height / self.tile)
        if len(tiles) > self.max_changed * total:
            return self._keyframe(frame, img, settings)
        return self._delta(frame, img, settings, chain, tiles)

    def _changed_tiles(
        self, diff: Image.Image, bbox: tuple[int, int, int, int]
    ) -> list[tuple[int, int]]:
        """The (column, row) of every tile with a changed pixel, left to right, top to bottom.

        The difference is shrunk to one pixel per tile in steps of at most
        16 px: each step marks any nonzero pixel 255, and a box average over
        at most 256 pixels holding a 255 rounds to at least 1. A few C calls
        instead of a crop per tile, several times faster on a full frame.
        Only the tiles around ``bbox`` are shrunk, unless
        they are most of the frame (a crop would cost more than it saves).
        """
        t = self.tile
        w, h = diff.size
        left, top, right, bottom = bbox
        col0, row0, col1, row1 = left // t, top // t, -(-right // t), -(-bottom // t)
        whole = 2 * (col1 - col0) * (row1 - row0) * t * t > w * h
        mask = (
            diff if whole else diff.crop((col0 * t, row0 * t, min(w, col1 * t), min(h, row1 * t)))
        )
        for step in self._steps:
            mask = mask.point(_NONZERO).reduce(step)
        if whole:
            mask = mask.crop((col0, row0, col1, row1))
        # A channel at 255 is at least 29 in luma: one byte per tile, nonzero where changed.
        changed = mask.point(_NONZERO).convert("L").tobytes()
        cols = col1 - col0
        return [(col0 + i % cols, row0 + i // cols) for i, v in enumerate(changed) if v]

    def _keyframe(self, frame: Frame, img: Image.Image, settings: Screenshots) -> EncodedFrame:
        data = self.codec.encode(img, settings.quality)
        key = image_id(data)
        self._chains[frame.window_id] = _Chain(img, (frame.width, frame.height), key, 0)
        self._chains.move_to_end(frame.window_id)
        while len(self._chains) > self.max_windows:
            self._chains.popitem(last=False)
        rec = ScreenshotRecord(
            to_ms(frame.t),
            ScreenshotKind.KEYFRAME,
            key,
            img.width,
            img.height,
            frame.width,
            frame.height,
        )
        return EncodedFrame(rec, data)

    def _delta(
        self,
        frame: Frame,
        img: Image.Image,
        settings: Screenshots,
        chain: _Chain,
        tiles: list[tuple[int, int]],
    ) -> EncodedFrame:
        t = self.tile
        cols = min(len(tiles), 16)
        rows = math.ceil(len(tiles) / cols)
        packed = Image.new("RGB", (cols * t, rows * t))
        w, h = img.size
        for i, n, col, row in tile_runs(tiles, cols):
            box = (col * t, row * t, min(w, (col + n) * t), min(h, row * t + t))
            packed.paste(img.crop(box), ((i % cols) * t, (i // cols) * t))
        data = self.codec.encode(packed, settings.quality)
        chain.prev = img
        chain.deltas += 1
        rec = ScreenshotRecord(
            to_ms(frame.t),
            ScreenshotKind.DELTA,
            image_id(data),
            w,
            h,
            frame.width,
            frame.height,
            base=chain.key_id,
            tile=t,
            columns=cols,
            tiles=tuple(tiles),
        )
        return EncodedFrame(rec, data)


#: Any nonzero channel value becomes 255 (a lookup table for all three channels).
_NONZERO = ([0] + [255] * 255) * 3


def _shrink_steps(tile: int) -> tuple[int, ...]:
    """Factors of ``tile``, each at most 16, whose product is ``tile`` (largest first)."""
    if tile < 1:
        raise ValueError(f"tile size {tile} is not positive")
    steps = []
    rest = tile
    while rest > 1:
        step = next((f for f in range(min(16, rest), 1, -1) if rest % f == 0), None)
        if step is None:
            raise ValueError(f"tile size {tile} has a prime factor above 16")
        steps.append(step)
        rest //= step
    return tuple(steps)


def _downscale(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``img`` at ``size`` (box filter: an area average, cheap and fair to text)."""
    if img.size == size:
        return img
    return img.resize(size, Image.Resampling.BOX)
