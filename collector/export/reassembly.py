"""Full frames from one batch's screenshots: keyframes decoded, deltas applied.

This module owns the frames of a batch's delta chains while the batch is
written. A keyframe is decoded when its record comes (its image's header
checked against the record first, ``overt.wire.frames.open_image``); a delta
is applied to its chain's frame in place (``apply_delta``), or to a copy
while a PNG thread still reads that frame. A chain's frame is held, by the
keyframe's content id, only while a later delta of the batch names it:
screenshots come in body order, so the deltas left to come are counted from
the records. How many chains may be held at once is checked before, by
:mod:`collector.export.opening` (``MAX_LIVE_CHAINS``).

Since a delta names its chain by the keyframe's content hash, two windows
whose keyframes are pixel-identical within one batch share one chain here.

The errors of ``overt.wire.frames`` pass through; the dataset writer turns
them into the batch's rejection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from PIL import Image

from overt.wire.frames import apply_delta, open_image
from overt.wire.records import Record, ScreenshotKind, ScreenshotRecord

from .errors import BatchRejected


class DeltaChains:
    """The frames of one batch's screenshots, reassembled in body order.

    ``in_flight`` says whether a frame is still being read by another thread
    (the PNG encoder); such a frame is copied before a delta changes it.
    """

    def __init__(self, records: list[Record], in_flight: Callable[[Image.Image], bool]) -> None:
        self._in_flight = in_flight
        self._frames: dict[str, Image.Image] = {}
        self._left = Counter(
            r.base
            for r in records
            if isinstance(r, ScreenshotRecord) and r.kind is ScreenshotKind.DELTA
        )

    def frame(self, rec: ScreenshotRecord, images: dict[str, bytes]) -> Image.Image:
        """The full frame ``rec`` stands for (its image in ``images``)."""
        if rec.kind is ScreenshotKind.KEYFRAME:
            img = open_image(images[rec.image], (rec.width, rec.height))
            if self._left[rec.image]:
                self._frames[rec.image] = img
            else:
                self._frames.pop(rec.image, None)
            return img
        assert rec.base is not None  # checked when the batch was opened
        img = self._base(rec.base)
        if self._in_flight(img):
            img = img.copy()
        apply_delta(img, rec, images[rec.image])
        self._left[rec.base] -= 1
        if self._left[rec.base]:
            self._frames[rec.base] = img
        else:
            del self._frames[rec.base]
        return img

    def _base(self, key: str) -> Image.Image:
        try:
            return self._frames[key]
        except KeyError:  # the open step checked every base; a guard, not a path
            raise BatchRejected("inconsistent body", "a delta's keyframe is not held") from None
