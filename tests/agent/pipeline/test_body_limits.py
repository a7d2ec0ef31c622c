"""The agent stays under the body's limits (``overt.wire.body``): they were
derived from its own settings (the batcher's size and age, the policy's
maxima, the encoder's chains), the fullest batch the batcher closes is within
them, and every image it writes states its size in its header. That a reader
refuses a body over a limit is ``tests/wire/test_body_limits``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PIL import Image
from pydantic import ValidationError

from agent.config import AgentConfig
from agent.pipeline.batcher import Batcher
from agent.pipeline.codecs import Codec, encode_image
from agent.pipeline.screens import FrameEncoder
from overt.wire.batch import Batch
from overt.wire.body import (
    DERIVED_FROM_BATCH_AGE_S,
    DERIVED_FROM_BATCH_BYTES,
    MAX_FRAME_PIXELS,
    MAX_FRAME_SIDE,
    MAX_LIVE_CHAINS,
    MAX_PATH_STEPS,
    MAX_RECORDS,
    MAX_SCREENSHOTS,
    MAX_STRING_CHARS,
    MAX_STRINGS_CHARS,
    decode_body,
)
from overt.wire.frames import image_header, open_image
from overt.wire.records import (
    ContextRecord,
    KeyTimingRecord,
    MousePathRecord,
    PathKind,
    Record,
    TextSpanRecord,
    TitleState,
)
from policies.model import Screenshots

T_MS = 1_800_000_000_000


def _img(w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h), (250, 250, 250))
    img.paste((20, 40, 200), (w // 4, h // 4, w // 2, h // 2))
    return img


def test_the_limits_were_derived_from_the_agents_own_settings() -> None:
    assert Batcher(device_id="d", policy_version=1, dataset_key_id="k").max_bytes == (
        DERIVED_FROM_BATCH_BYTES
    )
    assert AgentConfig.batch_max_bytes == DERIVED_FROM_BATCH_BYTES
    for field, most in (("max_per_minute", 120), ("max_width", MAX_FRAME_SIDE)):
        Screenshots(**{field: most})
        with pytest.raises(ValidationError):
            Screenshots(**{field: most + 1})
    assert 120 * DERIVED_FROM_BATCH_AGE_S // 60 + 1 <= MAX_SCREENSHOTS
    assert 2 * FrameEncoder().max_windows == MAX_LIVE_CHAINS
    assert MAX_FRAME_PIXELS == 7680 * 4320


def fill(make: Callable[[int], Record], *, age_s: float = DERIVED_FROM_BATCH_AGE_S) -> Batch:
    """Records from ``make`` into a batcher (one a millisecond) until it closes a batch."""
    batcher = Batcher(device_id="d", policy_version=1, dataset_key_id="k", max_age_s=age_s)
    batcher.context = ContextRecord(T_MS, "editor", "Doc", TitleState.KEPT, 0, 0, 800, 600, 1.0)
    for i in range(10**7):
        out = batcher.add(make(i), now=i / 1000)
        if out is not None:
            return out
    raise AssertionError("the batcher never closed a batch")


@pytest.mark.parametrize(
    ("name", "make", "within"),
    [
        (  # the smallest records: the most of them
            "key timings",
            lambda i: KeyTimingRecord(T_MS + i, i % 2 == 0),
            lambda records: len(records) <= MAX_RECORDS,
        ),
        (  # long spans of distinct text: the most characters
            "text spans",
            lambda i: TextSpanRecord(T_MS + i, T_MS + i, f"{i:08d}" * (MAX_STRING_CHARS // 8), 0),
            lambda records: sum(len(getattr(r, "text", "")) for r in records) <= MAX_STRINGS_CHARS,
        ),
        (  # long drags: the most path steps
            "drags",
            lambda i: MousePathRecord(
                T_MS + i, PathKind.DRAG, 0, 0, (30,) * 5000, (1,) * 5000, (0,) * 5000
            ),
            lambda records: sum(len(getattr(r, "dt", ())) for r in records) <= MAX_PATH_STEPS,
        ),
    ],
)
def test_the_fullest_batch_the_batcher_closes_is_within_the_limits(
    name: str, make: Callable[[int], Record], within: Callable[[list[Record]], bool]
) -> None:
    batch = fill(make)
    records, _ = decode_body(batch.body)
    assert within(records)


# ------------------------------------------------------------------ image headers


@pytest.mark.parametrize("size", [(1, 1), (17, 5), (1280, 800), (300, 7000)])
@pytest.mark.parametrize("codec", list(Codec))
def test_the_header_of_every_image_the_agent_writes_gives_its_size(
    size: tuple[int, int], codec: Codec
) -> None:
    blob = encode_image(_img(*size), 50, codec=codec)
    kind, w, h = image_header(blob)
    assert (w, h) == size
    assert kind == ("JPEG" if codec is Codec.JPEG else "WEBP")
    assert open_image(blob, size).size == size
