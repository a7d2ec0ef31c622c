"""The exporter's own PNG writer: any reader decodes it to the same pixels."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from collector.export.png import STRIP_ROWS, PngEncoder, encode_png


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


def _written(encoder: PngEncoder, frames: list[Image.Image], folder: Path) -> list[bytes]:
    folder.mkdir()
    jobs = [encoder.write(f, folder / f"{i}.png") for i, f in enumerate(frames)]
    encoder.wait()
    return [job.path.read_bytes() for job in jobs]


def test_threads_and_the_calling_thread_write_the_same_files(tmp_path: Path) -> None:
    frames = [noisy(64, 48, seed) for seed in range(6)]
    inline, threaded = PngEncoder(1), PngEncoder(1, jobs=2)
    try:
        assert _written(threaded, frames, tmp_path / "t") == _written(
            inline, frames, tmp_path / "i"
        )
        assert [f.read_bytes() for f in sorted((tmp_path / "i").iterdir())] == [
            encode_png(frames[int(f.stem)]) for f in sorted((tmp_path / "i").iterdir())
        ]
    finally:
        threaded.close()
        inline.close()


def test_a_tall_noisy_frame_is_written_in_strips_and_several_idat_chunks() -> None:
    img = noisy(640, 10 * STRIP_ROWS + 5, 3)  # 1.2 MB of pixels zlib cannot shrink
    data = encode_png(img, 1)
    assert data.count(b"IDAT") >= 2
    with Image.open(io.BytesIO(data)) as back:
        assert back.tobytes() == img.tobytes()


def test_a_frame_in_flight_is_known_until_its_file_is_written(tmp_path: Path) -> None:
    frames = [noisy(256, 256, seed) for seed in range(4)]
    encoder = PngEncoder(1, jobs=1)
    try:
        jobs = [encoder.write(f, tmp_path / f"{i}.png") for i, f in enumerate(frames)]
        assert len([f for f in frames if encoder.in_flight(f)]) <= 2  # jobs + 1
        encoder.wait()
        assert not any(encoder.in_flight(f) for f in frames)
        assert all(job.path.stat().st_size > 0 for job in jobs)
    finally:
        encoder.close()
