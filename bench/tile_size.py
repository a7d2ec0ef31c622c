"""Delta tile size: bytes and encode time of 16, 32 and 64 px tiles.

Run:  .venv/bin/python bench/tile_size.py [--tiles 16 32 64] [--repeat N]

No desktop: the frames are drawn with Pillow and DejaVu Sans (anti-aliased
text, as a desktop renders it), 1280x800, the default ``Screenshots()``
(max width 1280, quality 50), every image in one codec (``--codec``:
``lossless``, the default, is what the encoder gives screen content where it
fits its time budget; ``lossy`` is WebP at quality 50; ``auto`` leaves the
choice to the encoder, which then depends on this machine's speed). Two
edits, each a keyframe and then one frame per step, all encoded by one
``FrameEncoder`` per tile size (the same frames for every size):

- typing: an editor with 30 lines of text; one word (4-9 letters and a
  space) is typed at the end of a line per step, 40 steps, wrapping lines,
  as the screenshot after each typing pause would see it;
- scrolling: a table of 60 rows under a toolbar; the rows move up by 3 rows
  (72 px) per step, 12 steps, as after each scroll stop.

Reports per tile size and edit: keyframes and deltas emitted, delta bytes,
tiles sent, and the median of the summed encode time over ``--repeat`` runs
(each run with a fresh encoder, codec timing included). Results go in
BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.events import Frame, Rect
from agent.pipeline.codecs import Codec, CodecChooser, encode_image
from agent.pipeline.screens import FrameEncoder
from bench._machine import machine
from overt.wire.records import ScreenshotKind
from policies.model import Screenshots

W, H = 1280, 800
FONT_PATH = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = (
    *("export", "update", "staging", "timeout", "customer", "invoice", "queue", "retry"),
    *("owner", "review", "meeting", "monitoring", "deployed", "settings", "workaround"),
    *("duplicate", "escalated", "notes"),
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype(FONT_PATH, size)
    except OSError:
        return ImageFont.load_default()


def _chrome(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((0, 0, W, 28), fill=(236, 236, 236))
    d.text((8, 7), "File   Edit   View   Help", fill=(20, 20, 20), font=_font(13))
    d.line((0, 28, W, 28), fill=(200, 200, 200))


def typing_frames(rng: random.Random, steps: int = 40) -> Iterator[Image.Image]:
    font = _font(14)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(30)]
    row = 12
    lines[row] = ""
    for _ in range(steps + 1):
        img = Image.new("RGB", (W, H), (255, 255, 255))
        d = ImageDraw.Draw(img)
        _chrome(d)
        for i, text in enumerate(lines):
            d.text((16, 40 + i * 20), text, fill=(30, 30, 30), font=font)
        yield img
        word = rng.choice(WORDS) + " "
        if d.textlength(lines[row] + word, font=font) > W - 40:
            row += 1
            lines[row] = ""
        lines[row] += word


def scrolling_frames(rng: random.Random, steps: int = 12) -> Iterator[Image.Image]:
    font = _font(13)
    rows = [
        (f"T-{100 + i}", rng.choice(WORDS).title(), rng.choice(WORDS), f"{rng.randint(1, 28)} Nov")
        for i in range(200)
    ]
    for step in range(steps + 1):
        img = Image.new("RGB", (W, H), (255, 255, 255))
        d = ImageDraw.Draw(img)
        _chrome(d)
        d.rectangle((0, 29, W, 60), fill=(246, 246, 246))
        for x, head in zip((16, 140, 420, 700), ("Ticket", "Summary", "Owner", "Due"), strict=True):
            d.text((x, 38), head, fill=(60, 60, 60), font=font)
        first = step * 3
        for i in range(30):
            y = 64 + i * 24
            if i % 2:
                d.rectangle((0, y, W, y + 23), fill=(248, 250, 252))
            for x, cell in zip((16, 140, 420, 700), rows[first + i], strict=True):
                d.text((x, y + 4), cell, fill=(30, 30, 30), font=font)
            d.line((0, y + 23, W, y + 23), fill=(225, 225, 225))
        yield img


class FixedCodec(CodecChooser):
    """Every image in one codec, whatever the time budget says."""

    def __init__(self, codec: Codec) -> None:
        super().__init__()
        self.codec = codec

    def encode(self, img: Image.Image, quality: int) -> bytes:
        self.last = self.codec
        return encode_image(img, quality, codec=self.codec)


def encode_all(frames: list[Image.Image], tile: int, codec: str) -> tuple[dict[str, int], float]:
    settings = Screenshots()
    chooser = CodecChooser() if codec == "auto" else FixedCodec(Codec(codec))
    enc = FrameEncoder(tile=tile, codec=chooser)
    stats = {"keyframes": 0, "key_bytes": 0, "deltas": 0, "delta_bytes": 0, "tiles": 0}
    elapsed = 0.0
    for i, img in enumerate(frames):
        frame = Frame(float(i), 1, Rect(0, 0, W, H), W, H, img.tobytes())
        start = time.perf_counter()
        out = enc.encode(frame, settings)
        elapsed += time.perf_counter() - start
        if out is None:
            continue
        if out.record.kind is ScreenshotKind.KEYFRAME:
            stats["keyframes"] += 1
            stats["key_bytes"] += len(out.image)
        else:
            stats["deltas"] += 1
            stats["delta_bytes"] += len(out.image)
            stats["tiles"] += len(out.record.tiles)
    return stats, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--codec", choices=("lossless", "lossy", "auto"), default="lossless", help="see above"
    )
    args = parser.parse_args()
    edits = {
        "typing": list(typing_frames(random.Random(args.seed))),
        "scrolling": list(scrolling_frames(random.Random(args.seed))),
    }
    print(machine())
    print(f"codec: {args.codec}")
    print(
        f"{'edit':<10} {'tile':>4} {'keys':>4} {'key B':>8} {'deltas':>6} "
        f"{'delta B':>8} {'B/delta':>7} {'tiles':>6} {'encode ms':>9} {'ms/frame':>8}"
    )
    for name, frames in edits.items():
        for tile in args.tiles:
            runs = [encode_all(frames, tile, args.codec) for _ in range(args.repeat)]
            stats = runs[0][0]
            ms = statistics.median(r[1] for r in runs) * 1000.0
            per_delta = stats["delta_bytes"] / max(1, stats["deltas"])
            print(
                f"{name:<10} {tile:>4} {stats['keyframes']:>4} {stats['key_bytes']:>8} "
                f"{stats['deltas']:>6} {stats['delta_bytes']:>8} {per_delta:>7.0f} "
                f"{stats['tiles']:>6} {ms:>9.1f} {ms / len(frames):>8.2f}"
            )


if __name__ == "__main__":
    main()
