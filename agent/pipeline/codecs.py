"""Image codecs for screenshots: the most compact one that fits the time budget.

This module owns how one screenshot image becomes bytes: :func:`encode_image`
(WebP lossless, WebP lossy or JPEG), :func:`looks_like_screen` (few distinct
colours for its size: text, widgets, flat fills) and :class:`CodecChooser`,
which takes for each image the most compact codec expected to finish within
:func:`frame_budget_ms`, learning each codec's speed on this machine. It is
apart from :mod:`agent.pipeline.screens` because the choice depends only on
the image, the clock and the machine, not on frames, windows or chains.

Screen content is WebP lossless (exact pixels, and smaller than lossy WebP or
JPEG on text and widgets); a photograph, a video frame or a gradient is WebP
lossy at the settings' ``quality`` (method 2), far smaller than lossless.
Where the chosen WebP would not fit the time budget a faster lossless effort
is taken, then lossy WebP, then JPEG at ``quality``; JPEG also when this
Pillow has no WebP. Readers detect the format from the magic bytes. The
figures behind these choices are in BENCHMARKS.md ("Screenshot latency").

Nothing here reads the wall clock (``timer`` is injected) or starts a thread.
"""

from __future__ import annotations

import io
import statistics
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from PIL import Image, features

WEBP = features.check("webp")


class Codec(StrEnum):
    """How ``CodecChooser`` may encode an image, most compact for screen content first."""

    LOSSLESS = "lossless"  # WebP lossless, effort 80, method 2
    LOSSLESS_FAST = "lossless_fast"  # WebP lossless, effort 10, method 1: faster, a little larger
    LOSSY = "lossy"  # WebP lossy at the settings' quality, method 2
    JPEG = "jpeg"  # at the settings' quality: fast at any size, never timed


#: WebP lossless (quality, method): quality is the effort, not fidelity.
_LOSSLESS_EFFORT = {Codec.LOSSLESS: (80, 2), Codec.LOSSLESS_FAST: (10, 1)}
#: The codecs tried, in order, for screen content and for photo-like content.
_SCREEN_ORDER: tuple[Codec, ...] = (Codec.LOSSLESS, Codec.LOSSLESS_FAST, Codec.LOSSY, Codec.JPEG)
_PHOTO_ORDER: tuple[Codec, ...] = (Codec.LOSSY, Codec.JPEG)

#: Trigger to encoded bytes may take this long (BENCHMARKS.md, "Screenshot latency").
LATENCY_TARGET_MS = 30.0
#: What a screenshot request spends before the encoder sees the frame, on a
#: slow core: the window probe and a margin, then the grab per megapixel
#: (as measured in BENCHMARKS.md).
_BEFORE_ENCODE_MS = 5.0
_GRAB_MS_PER_MPX = 5.0
#: Each codec's speed before it was measured here (pixels per ms); deliberately
#: at the low end of what BENCHMARKS.md measured on a slow core.
_PRIOR_PX_PER_MS = {Codec.LOSSLESS: 40_000.0, Codec.LOSSLESS_FAST: 100_000.0, Codec.LOSSY: 40_000.0}
#: A codec's speed is the median of its last few timings (one preempted
#: encode does not turn the next frames to JPEG).
_TIMINGS_KEPT = 5
#: What counting an image's colours costs (pixels per ms).
_COLOURS_PX_PER_MS = 1_000_000.0
#: At most this many distinct colours (and one per 16 pixels, or 256) make screen content.
SCREEN_COLOURS = 4096
#: Images smaller than this say little about a codec's speed (fixed costs
#: dominate), and take a millisecond or two in any codec.
_MIN_SAMPLE_PX = 100_000
#: After this many large images did without their first choice, the cheapest
#: codec passed over is timed once more.
_REPROBE_EVERY = 20


def frame_budget_ms(source_pixels: int) -> float:
    """How long encoding a frame of ``source_pixels`` (as grabbed) may take,
    downscale and change check included: what the latency target leaves after
    the probe and the grab."""
    return LATENCY_TARGET_MS - _BEFORE_ENCODE_MS - _GRAB_MS_PER_MPX * source_pixels / 1e6


def encode_image(
    img: Image.Image, quality: int, *, webp: bool = True, codec: Codec = Codec.LOSSY
) -> bytes:
    """``img`` as ``codec`` (WebP lossy by default); JPEG when WebP is not wanted or available."""
    buf = io.BytesIO()
    if not (webp and WEBP) or codec is Codec.JPEG:
        img.save(buf, format="JPEG", quality=quality)
    elif codec in _LOSSLESS_EFFORT:
        effort, method = _LOSSLESS_EFFORT[codec]
        img.save(buf, format="WEBP", lossless=True, quality=effort, method=method)
    else:
        img.save(buf, format="WEBP", quality=quality, method=2)
    return buf.getvalue()


def looks_like_screen(img: Image.Image) -> bool:
    """Whether ``img`` has few distinct colours for its size, as screen content has.

    Text, widgets and flat fills reuse a few hundred colours; a photograph, a
    video frame or a gradient has a new colour every few pixels. Screen
    content is smaller lossless, photos are far smaller lossy. At most
    ``SCREEN_COLOURS`` colours, and one per 16 pixels, but always 256 (so
    that a strip of photo tiles is not taken for widgets, while a 16 px tile
    of dense anti-aliased text is not taken for a photo). Stops early on a
    photo.
    """
    limit = min(SCREEN_COLOURS, max(256, img.width * img.height // 16))
    return img.getcolors(limit) is not None


class CodecChooser:
    """The most compact codec for the content that fits the time budget.

    Screen content (``looks_like_screen``) is WebP lossless, photo-like
    content WebP lossy. WebP is many times slower than JPEG: on a slow laptop
    core a 1080p frame can take longer than the latency target, which is felt
    as lag and battery. So the chooser learns each WebP codec's throughput on this
    machine (the median of its last timings on images large enough to
    measure) and takes, in order, lossless, a faster lossless effort, lossy
    WebP (for photos: lossy WebP), the first expected to finish within the
    budget, else JPEG. Images
    under ``_MIN_SAMPLE_PX`` (deltas of a few tiles) take a millisecond or
    two in any codec and always get their first choice. After
    ``_REPROBE_EVERY`` large images did without their first choice, the
    cheapest codec passed over is timed again, in case it was measured on a
    busy machine. A codec's first image is not learned from: it pays for the
    library's set-up. The blob is self-describing, so
    readers need not know which codec was chosen.

    The budget is for a whole frame: ``frame_budget_ms`` of the frame as
    grabbed, unless ``budget_ms`` fixes one for every frame. When
    ``FrameEncoder`` calls ``start_frame`` first, the time since (downscale,
    change check) counts against it; an image encoded without it is taken for
    a whole frame. ``timer`` is injected for tests.
    """

    def __init__(
        self,
        *,
        budget_ms: float | None = None,
        timer: Callable[[], float] = time.perf_counter,
        webp: bool | None = None,
    ) -> None:
        self.budget_ms = budget_ms
        self._timer = timer
        self._webp = WEBP if webp is None else webp
        self._timings: dict[Codec, deque[float]] = {
            c: deque(maxlen=_TIMINGS_KEPT) for c in _PRIOR_PX_PER_MS
        }
        self._streak = 0
        self._started: float | None = None
        self._frame_budget = 0.0
        self._warm: set[Codec] = set()
        #: The codec of the last image encoded.
        self.last: Codec | None = None

    def start_frame(self, source_pixels: int) -> None:
        """A frame of ``source_pixels`` (as grabbed) starts now: time spent
        before ``encode`` counts against its budget."""
        self._started = self._timer()
        self._frame_budget = self._budget(source_pixels)

    def _budget(self, source_pixels: int) -> float:
        return frame_budget_ms(source_pixels) if self.budget_ms is None else self.budget_ms

    def expected_ms(self, codec: Codec, pixels: int) -> float:
        """How long ``codec`` is expected to take for ``pixels`` here (JPEG: 0, not timed)."""
        timings = self._timings.get(codec)
        if timings is None:
            return 0.0
        return pixels / (statistics.median(timings) if timings else _PRIOR_PX_PER_MS[codec])

    def encode(self, img: Image.Image, quality: int) -> bytes:
        if self._started is not None:
            left = self._frame_budget - (self._timer() - self._started) * 1000.0
            self._started = None
        else:
            left = self._budget(img.width * img.height)
        if not self._webp:
            self.last = Codec.JPEG
            return encode_image(img, quality, webp=False)
        pixels = img.width * img.height
        large = pixels >= _MIN_SAMPLE_PX
        reprobe = large and self._streak >= _REPROBE_EVERY
        # Colours are counted only when a lossless codec could still fit.
        counting = pixels / _COLOURS_PX_PER_MS
        order = _PHOTO_ORDER
        if not large or reprobe or self.expected_ms(Codec.LOSSLESS_FAST, pixels) + counting <= left:
            left -= counting
            if looks_like_screen(img):
                order = _SCREEN_ORDER
        if not large:  # a few tiles: a millisecond or two in any codec, so the most compact
            codec = order[0]
        else:
            codec = next(c for c in order if c is Codec.JPEG or self.expected_ms(c, pixels) <= left)
            if codec is order[0]:
                self._streak = 0
            elif reprobe:  # the cheapest codec passed over may have been timed on a busy machine
                codec = min(order[: order.index(codec)], key=lambda c: self.expected_ms(c, pixels))
                self._streak = 0
            else:
                self._streak += 1
        self.last = codec
        if codec is Codec.JPEG:
            return encode_image(img, quality, codec=codec)
        start = self._timer()
        data = encode_image(img, quality, codec=codec)
        elapsed_ms = (self._timer() - start) * 1000.0
        warm = codec in self._warm
        self._warm.add(codec)
        if large and warm and elapsed_ms > 0:
            self._timings[codec].append(pixels / elapsed_ms)
        return data
