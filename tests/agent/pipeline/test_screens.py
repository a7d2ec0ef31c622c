from __future__ import annotations

import io
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, ImageDraw, ImageStat

from agent.events import AppIdentity, Frame, Rect, WindowInfo
from agent.pipeline import codecs
from agent.pipeline.screens import FrameEncoder, GrabRequest, ScreenshotScheduler, Trigger
from overt.wire.errors import FormatError as PipelineError
from overt.wire.errors import FrameError
from overt.wire.frames import image_id, reassemble
from overt.wire.records import ScreenshotKind, ScreenshotRecord
from policies.model import Screenshots

T = 1_800_000_000.0
WIN = WindowInfo(7, AppIdentity(process_name="editor"), "doc", Rect(100, 50, 640, 480))
SHOTS = Screenshots(min_interval_seconds=2.0, max_per_minute=12, max_width=1280, quality=95)


# ------------------------------------------------------------------ scheduler


def test_press_grabs_at_once() -> None:
    s = ScreenshotScheduler()
    assert s.trigger(Trigger.PRESS, WIN, SHOTS, T) == GrabRequest(WIN, Trigger.PRESS, T)


def test_trigger_within_min_interval_is_deferred_to_the_allowed_time() -> None:
    s = ScreenshotScheduler()
    assert s.trigger(Trigger.PRESS, WIN, SHOTS, T) is not None
    assert s.trigger(Trigger.PRESS, WIN, SHOTS, T + 0.5) is None
    assert s.trigger(Trigger.FOCUS, WIN, SHOTS, T + 1.0) is None  # replaces the pending one
    assert s.next_due == pytest.approx(T + 2.0)
    assert s.poll(T + 1.9) is None
    assert s.poll(T + 2.0) == GrabRequest(WIN, Trigger.FOCUS, T + 2.0)
    assert s.poll(T + 10) is None


def test_max_per_minute_holds_over_a_sliding_minute() -> None:
    shots = Screenshots(min_interval_seconds=0.2, max_per_minute=3)
    s = ScreenshotScheduler()
    granted = [s.trigger(Trigger.PRESS, WIN, shots, T + i) for i in range(3)]
    assert all(g is not None for g in granted)
    assert s.trigger(Trigger.PRESS, WIN, shots, T + 3) is None
    assert s.next_due == pytest.approx(T + 60)
    assert s.poll(T + 59.9) is None
    assert s.poll(T + 60) is not None


def test_typing_pause_triggers_half_a_second_after_the_last_key() -> None:
    s = ScreenshotScheduler()
    assert s.typing(WIN, SHOTS, T) is None
    assert s.typing(WIN, SHOTS, T + 0.3) is None
    assert s.poll(T + 0.7) is None
    assert s.poll(T + 0.8) == GrabRequest(WIN, Trigger.TYPING_PAUSE, T + 0.8)


def test_scroll_stop_triggers_after_the_last_scroll() -> None:
    s = ScreenshotScheduler()
    assert s.scrolled(WIN, SHOTS, T) is None
    assert s.scrolled(WIN, SHOTS, T + 0.1) is None
    assert s.poll(T + 0.39) is None
    assert s.poll(T + 0.4) == GrabRequest(WIN, Trigger.SCROLL_STOP, T + 0.4)


@pytest.mark.parametrize("settings", [None, Screenshots(enabled=False)])
def test_no_grab_without_screenshot_settings(settings: Screenshots | None) -> None:
    s = ScreenshotScheduler()
    assert s.trigger(Trigger.PRESS, WIN, settings, T) is None
    assert s.typing(WIN, settings, T) is None
    assert s.next_due is None
    assert s.poll(T + 100) is None


def test_cancel_forgets_the_pending_request() -> None:
    s = ScreenshotScheduler()
    s.typing(WIN, SHOTS, T)
    s.cancel()
    assert s.poll(T + 5) is None


# ------------------------------------------------------------------ encoder


def base_image(w: int = 640, h: int = 480) -> Image.Image:
    img = Image.new("RGB", (w, h), (245, 245, 240))
    d = ImageDraw.Draw(img)
    for i in range(0, h, 18):  # lines of "text"
        for j in range(10, w - 40, 37):
            d.rectangle((j, i + 4, j + 25, i + 12), fill=((i * 3) % 200, (j * 5) % 200, 90))
    d.rectangle((0, 0, w, 30), fill=(40, 60, 120))
    return img


def frame(img: Image.Image, t: float = T, window_id: int = 7) -> Frame:
    w, h = img.size
    return Frame(t, window_id, Rect(100, 50, w, h), w, h, img.tobytes())


def close(a: Image.Image, b: Image.Image, tolerance: float = 4.0) -> bool:
    assert a.size == b.size
    diff = ImageStat.Stat(ImageChops.difference(a, b)).mean
    return max(diff) <= tolerance


def test_first_frame_is_a_keyframe_and_an_unchanged_frame_is_skipped() -> None:
    enc = FrameEncoder()
    img = base_image()
    first = enc.encode(frame(img), SHOTS)
    assert first is not None
    assert first.record.kind is ScreenshotKind.KEYFRAME
    assert first.record.image == image_id(first.image)
    assert enc.encode(frame(img, T + 1), SHOTS) is None
    assert enc.skipped == 1


def test_small_change_is_a_delta_with_few_tiles_and_reassembles() -> None:
    enc = FrameEncoder()
    img = base_image()
    key = enc.encode(frame(img), SHOTS)
    assert key is not None
    changed = img.copy()
    ImageDraw.Draw(changed).rectangle((200, 200, 230, 215), fill=(255, 0, 0))
    delta = enc.encode(frame(changed, T + 1), SHOTS)
    assert delta is not None
    rec = delta.record
    assert rec.kind is ScreenshotKind.DELTA
    assert rec.base == key.record.image
    t = enc.tile
    assert set(rec.tiles) == {
        (c, r) for c in range(200 // t, 230 // t + 1) for r in range(200 // t, 215 // t + 1)
    }
    again = changed.copy()
    ImageDraw.Draw(again).rectangle((600, 440, 639, 479), fill=(0, 200, 0))  # an edge tile
    delta2 = enc.encode(frame(again, T + 2), SHOTS)
    assert delta2 is not None
    assert delta2.record.kind is ScreenshotKind.DELTA
    out = reassemble(key.image, [(rec, delta.image), (delta2.record, delta2.image)])
    assert close(out, again)
    assert out.getpixel((215, 207)) == pytest.approx((255, 0, 0), abs=40)
    assert not close(reassemble(key.image), again, tolerance=0.05)


def test_frames_are_downscaled_to_max_width() -> None:
    enc = FrameEncoder()
    img = base_image(1600, 900)
    out = enc.encode(frame(img), Screenshots(max_width=800, quality=90))
    assert out is not None
    assert (out.record.width, out.record.height) == (800, 450)
    assert (out.record.source_width, out.record.source_height) == (1600, 900)
    with Image.open(io.BytesIO(out.image)) as decoded:
        assert decoded.size == (800, 450)


@pytest.mark.parametrize("why", ["size", "window", "forced", "large change", "every n"])
def test_keyframe_reasons(why: str) -> None:
    enc = FrameEncoder(keyframe_every=3)
    img = base_image()
    assert enc.encode(frame(img), SHOTS) is not None
    nxt = img.copy()
    ImageDraw.Draw(nxt).rectangle((5, 100, 20, 110), fill=(0, 0, 0))
    window_id = 7
    if why == "size":
        nxt = base_image(600, 480)
    elif why == "window":
        window_id = 8
    elif why == "forced":
        enc.force_keyframe()
    elif why == "large change":
        nxt = nxt.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    elif why == "every n":
        for i in range(3):
            step = img.copy()
            ImageDraw.Draw(step).rectangle((5, 100 + i * 70, 20, 110 + i * 70), fill=(0, 0, 0))
            d = enc.encode(frame(step, T + i + 1), SHOTS)
            assert d is not None
            assert d.record.kind is ScreenshotKind.DELTA
    out = enc.encode(frame(nxt, T + 10, window_id), SHOTS)
    assert out is not None
    assert out.record.kind is ScreenshotKind.KEYFRAME


def _tiles_by_crop(a: Image.Image, b: Image.Image, t: int) -> tuple[tuple[int, int], ...]:
    """The reference: every tile of the two frames cropped and compared on its own."""
    diff = ImageChops.difference(a, b)
    w, h = diff.size
    return tuple(
        (c, r)
        for r in range(-(-h // t))
        for c in range(-(-w // t))
        if diff.crop((c * t, r * t, min(w, c * t + t), min(h, r * t + t))).getbbox() is not None
    )


_COLOURS = st.sampled_from([(0, 0, 1), (1, 0, 0), (0, 1, 0), (255, 255, 255), (9, 200, 3)])


@settings(max_examples=150, deadline=None)
@given(
    size=st.tuples(st.integers(1, 90), st.integers(1, 90)),
    tile=st.sampled_from([1, 3, 7, 16, 24, 32, 48]),
    points=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True), _COLOURS),
        min_size=1,
        max_size=6,
    ),
)
def test_a_delta_sends_exactly_the_tiles_with_a_changed_pixel(
    size: tuple[int, int], tile: int, points: list[tuple[float, float, tuple[int, int, int]]]
) -> None:
    w, h = size
    before = Image.new("RGB", size)
    after = before.copy()
    for fx, fy, colour in points:  # changes as small as one channel of one pixel by one
        after.putpixel((int(fx * w), int(fy * h)), colour)
    enc = FrameEncoder(tile=tile, max_changed=1.0)
    key = enc.encode(frame(before), SHOTS)
    assert key is not None
    out = enc.encode(frame(after, T + 1), SHOTS)
    assert out is not None
    assert out.record.tiles == _tiles_by_crop(before, after, tile)
    if codecs.WEBP:  # lossless: the tiles, packed in runs, come back exactly
        rebuilt = reassemble(key.image, [(out.record, out.image)])
        assert ImageChops.difference(rebuilt, after).getbbox() is None


def test_reassemble_refuses_a_tile_outside_the_frame() -> None:
    enc = FrameEncoder()
    img = base_image()
    key = enc.encode(frame(img), SHOTS)
    assert key is not None
    changed = img.copy()
    ImageDraw.Draw(changed).rectangle((600, 440, 639, 479), fill=(0, 200, 0))
    delta = enc.encode(frame(changed, T + 1), SHOTS)
    assert delta is not None
    cols, rows = -(-640 // enc.tile), -(-480 // enc.tile)
    for outside in ((cols, 0), (0, rows), (-1, 0)):
        bad = replace(delta.record, tiles=(*delta.record.tiles[:-1], outside))
        with pytest.raises(PipelineError, match="outside the frame"):
            reassemble(key.image, [(bad, delta.image)])


@pytest.mark.parametrize("tile", [0, 17, 34])
def test_a_tile_size_with_a_prime_factor_above_16_is_refused(tile: int) -> None:
    with pytest.raises(ValueError, match="tile size"):
        FrameEncoder(tile=tile)


def test_frame_with_wrong_pixel_count_is_rejected() -> None:
    bad = Frame(T, 7, Rect(0, 0, 10, 10), 10, 10, b"\x00" * 299)
    with pytest.raises(FrameError):
        FrameEncoder().encode(bad, SHOTS)


def test_jpeg_is_the_fallback_without_webp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codecs, "WEBP", False)
    enc = FrameEncoder()
    img = base_image()
    key = enc.encode(frame(img), SHOTS)
    assert key is not None
    assert key.image[:2] == b"\xff\xd8"
    changed = img.copy()
    ImageDraw.Draw(changed).rectangle((300, 300, 310, 310), fill=(0, 0, 255))
    delta = enc.encode(frame(changed, T + 1), SHOTS)
    assert delta is not None
    assert close(reassemble(key.image, [(delta.record, delta.image)]), changed, tolerance=6)


def test_webp_is_used_when_available() -> None:
    if not codecs.WEBP:
        pytest.skip("this Pillow has no WebP")
    out = FrameEncoder().encode(frame(base_image()), SHOTS)
    assert out is not None
    assert out.image[:4] == b"RIFF"
    assert out.image[8:12] == b"WEBP"


def test_reassemble_rejects_garbage() -> None:
    with pytest.raises(PipelineError):
        reassemble(b"not an image")
    key = FrameEncoder().encode(frame(base_image()), SHOTS)
    assert key is not None
    wrong: ScreenshotRecord = key.record  # a keyframe is not a delta
    with pytest.raises(PipelineError):
        reassemble(key.image, [(wrong, key.image)])


class _StepTimer:
    """A timer that advances by ``step`` seconds on every reading."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _webp_kind(data: bytes) -> str:
    """``lossless`` (a VP8L chunk), ``lossy`` (VP8, maybe in an extended VP8X file) or ``jpeg``."""
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    assert _is_webp(data)
    return "lossless" if b"VP8L" in data[12:40] else "lossy"


def photo(w: int = 640, h: int = 480) -> Image.Image:
    """Photo-like content: smooth gradients under noise, a new colour at nearly every pixel."""
    gradient = Image.linear_gradient("L").resize((w, h))
    noise = Image.effect_noise((w, h), 40)
    return Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.ROTATE_180)))


def test_screen_content_is_lossless_and_reassembles_exactly() -> None:
    if not codecs.WEBP:
        pytest.skip("this Pillow has no WebP")
    enc = FrameEncoder()
    img = base_image()
    key = enc.encode(frame(img), SHOTS)
    assert key is not None
    assert _webp_kind(key.image) == "lossless"
    changed = img.copy()
    ImageDraw.Draw(changed).text((200, 200), "typed", fill=(10, 10, 10))
    delta = enc.encode(frame(changed, T + 1), SHOTS)
    assert delta is not None
    assert delta.record.kind is ScreenshotKind.DELTA
    assert _webp_kind(delta.image) == "lossless"
    out = reassemble(key.image, [(delta.record, delta.image)])
    assert ImageChops.difference(out, changed).getbbox() is None  # exact pixels


def test_photo_like_content_stays_lossy() -> None:
    if not codecs.WEBP:
        pytest.skip("this Pillow has no WebP")
    out = FrameEncoder().encode(frame(photo()), SHOTS)
    assert out is not None
    assert _webp_kind(out.image) == "lossy"


def tile_of(colours: int, size: int = 16) -> Image.Image:
    """A tile using ``colours`` grey levels."""
    img = Image.new("RGB", (size, size))
    img.putdata([(v, v, v) for v in (i % colours * 3 for i in range(size * size))])
    return img


@pytest.mark.parametrize(
    ("name", "img", "screen"),
    [
        ("text and widgets", base_image(), True),
        ("one flat colour", Image.new("RGB", (800, 600), (200, 200, 200)), True),
        ("a single tile of text", base_image().crop((0, 30, 16, 46)), True),
        ("a 16 px tile of 80 colours, as dense anti-aliased text has", tile_of(80), True),
        ("a photo", photo(), False),
        ("a strip of photo tiles", photo(512, 64), False),
        ("four tiles of a photo", photo(32, 32), False),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_screen_content_is_told_from_photos(name: str, img: Image.Image, screen: bool) -> None:
    assert codecs.looks_like_screen(img) is screen


class _Clock:
    """A timer read by hand: ``now`` moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_codec_keeps_lossless_where_it_fits_the_budget() -> None:
    if not codecs.WEBP:
        pytest.skip("this Pillow has no WebP")
    codec = codecs.CodecChooser(budget_ms=15, timer=_StepTimer(0.002))  # 2 ms per encode
    img = Image.new("RGB", (800, 600), (200, 200, 200))
    for _ in range(5):
        assert _webp_kind(codec.encode(img, 50)) == "lossless"
        assert codec.last is codecs.Codec.LOSSLESS


def test_time_spent_on_the_frame_before_the_codec_counts_against_the_budget() -> None:
    if not codecs.WEBP:
        pytest.skip("this Pillow has no WebP")
    clock = _Clock()
    codec = codecs.CodecChooser(budget_ms=15, timer=clock)
    img = base_image(800, 600)

    def chosen(spent_s: float | None) -> codecs.Codec | None:
        if spent_s is not None:
            codec.start_frame(800 * 600)
            clock.now += spent_s  # downscale and change check
        codec.encode(img, 50)
        return codec.last

    # 6 ms spent: lossless (12 ms expected) no longer fits, the fast effort does.
    assert chosen(0.006) is codecs.Codec.LOSSLESS_FAST
    assert chosen(0.014) is codecs.Codec.JPEG  # only JPEG fits in what is left
    assert chosen(None) is codecs.Codec.LOSSLESS  # not started as a frame: the whole budget


def test_a_smaller_window_leaves_more_of_the_latency_target_to_the_encoder() -> None:
    """The grab of a small window is quick, so its frame may take longer to encode."""
    if not codecs.WEBP:
        pytest.skip("this Pillow has no WebP")
    assert codecs.frame_budget_ms(1920 * 1080) == pytest.approx(14.6, abs=0.1)
    assert codecs.frame_budget_ms(800 * 600) == pytest.approx(22.6, abs=0.1)
    clock = _Clock()
    codec = codecs.CodecChooser(timer=clock)
    img = base_image(800, 600)  # lossless is expected to take 12 ms (the prior)

    def chosen(source_pixels: int) -> codecs.Codec | None:
        codec.start_frame(source_pixels)
        clock.now += 0.006  # a downscale to 800x600, the change check
        codec.encode(img, 50)
        return codec.last

    assert chosen(800 * 600) is codecs.Codec.LOSSLESS  # 22.6 - 6 ms left
    assert chosen(1920 * 1080) is codecs.Codec.LOSSLESS_FAST  # 14.6 - 6 ms left


def test_a_few_tiles_get_their_first_choice_even_when_the_frame_took_its_budget() -> None:
    if not codecs.WEBP:
        pytest.skip("this Pillow has no WebP")
    clock = _Clock()
    codec = codecs.CodecChooser(budget_ms=15, timer=clock)
    codec.start_frame(1920 * 1080)
    clock.now += 0.040  # a downscale on a busy machine
    tiles = base_image(256, 32)  # the packed tiles of a delta
    assert _webp_kind(codec.encode(tiles, 50)) == "lossless"
    codec.start_frame(1920 * 1080)
    clock.now += 0.040
    assert _webp_kind(codec.encode(photo(256, 32), 50)) == "lossy"


def test_a_slow_codec_gives_way_to_the_next_and_is_retried_later() -> None:
    if not codecs.WEBP:
        pytest.skip("this Pillow has no WebP")
    codec = codecs.CodecChooser(budget_ms=15, timer=_StepTimer(0.200))  # 200 ms per encode
    big = Image.new("RGB", (800, 500), (200, 200, 200))
    chosen = []
    for _ in range(30):
        codec.encode(big, 50)
        chosen.append(codec.last)
    # Each WebP codec's first image pays for set-up and is not learned from;
    # the second shows it is far too slow here.
    lossless, fast, lossy, jpeg = codecs.Codec
    assert chosen[:6] == [lossless, lossless, fast, fast, lossy, lossy]
    assert chosen[6:].count(jpeg) >= 21
    assert any(c is not jpeg for c in chosen[7:]), "WebP is never timed again"
    # Small images (deltas of a few tiles) still fit and stay WebP.
    assert _is_webp(codec.encode(Image.new("RGB", (128, 64)), 50))


def test_a_codecs_first_image_is_not_learned_from() -> None:
    if not codecs.WEBP:
        pytest.skip("this Pillow has no WebP")
    clock = _Clock()
    codec = codecs.CodecChooser(budget_ms=15, timer=clock)
    img = Image.new("RGB", (800, 600), (200, 200, 200))
    real_encode = codecs.encode_image
    took = iter([0.5, 0.004, 0.004])  # the first encode sets the library up

    def encode(*args: object, **kwargs: object) -> bytes:
        clock.now += next(took)
        return real_encode(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codecs, "encode_image", encode)
        for _ in range(3):
            codec.encode(img, 50)
            assert codec.last is codecs.Codec.LOSSLESS


def test_codecs_are_only_jpeg_without_webp() -> None:
    codec = codecs.CodecChooser(webp=False)
    for img in (base_image(), photo(), Image.new("RGB", (32, 32))):
        assert codec.encode(img, 50)[:2] == b"\xff\xd8"
        assert codec.last is codecs.Codec.JPEG


def test_unchanged_frame_is_skipped_before_any_downscale() -> None:
    enc = FrameEncoder()
    img = base_image().resize((1600, 900))
    small = Screenshots(max_width=800)
    assert enc.encode(frame(img), small) is not None
    assert enc.encode(frame(img, T + 1), small) is None
    assert enc.skipped == 1


def _edit(img: Image.Image, i: int) -> Image.Image:
    out = img.copy()
    ImageDraw.Draw(out).rectangle((40 + 60 * i, 300, 70 + 60 * i, 315), fill=(200, 0, 40 * i))
    return out


def test_two_windows_interleave_their_chains_and_both_reassemble() -> None:
    enc = FrameEncoder()
    a, b = base_image(), base_image(480, 360).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    shown: dict[int, Image.Image] = {}
    chains: dict[str, list[tuple[ScreenshotRecord, bytes]]] = {}
    keys: dict[str, bytes] = {}
    kinds = []
    t = T
    for step in range(4):
        for window_id, img in ((7, a), (8, b)):
            t += 1
            shown[window_id] = _edit(img, step) if step else img
            out = enc.encode(frame(shown[window_id], t, window_id), SHOTS)
            assert out is not None
            kinds.append(out.record.kind)
            if out.record.kind is ScreenshotKind.KEYFRAME:
                keys[out.record.image] = out.image
                chains[out.record.image] = []
            else:
                assert out.record.base in keys
                chains[out.record.base].append((out.record, out.image))
    assert kinds == [ScreenshotKind.KEYFRAME] * 2 + [ScreenshotKind.DELTA] * 6
    assert len(keys) == 2
    rebuilt = [reassemble(keys[k], chains[k]) for k in keys]
    assert close(rebuilt[0], shown[7])
    assert close(rebuilt[1], shown[8])


def test_a_window_back_unchanged_gives_a_one_tile_delta_of_its_chain() -> None:
    enc = FrameEncoder()
    a, b = base_image(), base_image(480, 360)
    key = enc.encode(frame(a), SHOTS)
    assert key is not None
    assert enc.encode(frame(b, T + 1, 8), SHOTS) is not None
    back = enc.encode(frame(a, T + 2), SHOTS)
    assert back is not None
    assert back.record.kind is ScreenshotKind.DELTA
    assert back.record.base == key.record.image
    assert back.record.tiles == ((0, 0),)
    assert close(reassemble(key.image, [(back.record, back.image)]), a)
    assert enc.encode(frame(a, T + 3), SHOTS) is None  # unchanged, same window: skipped
    enc.focus_changed()  # focus went to an uncaptured window and came back
    again = enc.encode(frame(a, T + 4), SHOTS)
    assert again is not None
    assert again.record.kind is ScreenshotKind.DELTA
    assert again.record.tiles == ((0, 0),)
    assert enc.encode(frame(a, T + 5), SHOTS) is None


@pytest.mark.parametrize("why", ["forced", "size", "evicted"])
def test_a_window_back_starts_a_keyframe_when_its_chain_is_gone(why: str) -> None:
    enc = FrameEncoder(max_windows=2)
    a = base_image()
    assert enc.encode(frame(a), SHOTS) is not None
    assert enc.encode(frame(base_image(480, 360), T + 1, 8), SHOTS) is not None
    if why == "forced":
        enc.force_keyframe()  # a batch was emitted
    elif why == "size":
        a = base_image(600, 480)
    elif why == "evicted":
        assert enc.encode(frame(base_image(320, 240), T + 2, 9), SHOTS) is not None
    out = enc.encode(frame(_edit(a, 1), T + 3), SHOTS)
    assert out is not None
    assert out.record.kind is ScreenshotKind.KEYFRAME
