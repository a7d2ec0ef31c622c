"""The exporter's own PNG writer: any reader decodes it to the same pixels."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageChops

from overt._export_png import PngEncoder, encode_png


def noisy(width: int, height: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 7), (257, 31), (1280, 8)])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_a_frame_decodes_to_exactly_its_pixels(width: int, height: int, level: int) -> None:
    img = noisy(width, height, width * height)
    data = encode_png(img, level)
    with Image.open(io.BytesIO(data)) as back:
        assert back.format == "PNG"
        assert back.mode == "RGB"
        assert back.size == (width, height)
        assert back.tobytes() == img.tobytes()
    with Image.open(io.BytesIO(data)) as again:
        again.verify()  # chunk CRCs


def test_other_modes_are_written_as_rgb() -> None:
    img = Image.new("RGBA", (5, 4), (10, 20, 30, 128))
    with Image.open(io.BytesIO(encode_png(img))) as back:
        assert back.mode == "RGB"
        assert ImageChops.difference(back, img.convert("RGB")).getbbox() is None


def test_threads_and_the_calling_thread_write_the_same_bytes() -> None:
    frames = [noisy(64, 48, seed) for seed in range(6)]
    inline, threaded = PngEncoder(1), PngEncoder(1, jobs=2)
    try:
        assert [threaded.submit(f)() for f in frames] == [inline.submit(f)() for f in frames]
    finally:
        threaded.close()
        inline.close()
