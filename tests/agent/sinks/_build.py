"""Batches, keys and a clock for the sink tests."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from overt.wire.batch import Batch, BatchHeader, SignalCounts
from overt.wire.sealed import dataset_public_b64, seal_batch

DATASET = X25519PrivateKey.from_private_bytes(hashlib.sha256(b"dataset").digest())
DATASET_B64 = dataset_public_b64(DATASET)
DATASET_ID = "dataset-1"
DEVICE = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"device").digest())
DEVICE_ID = "dev-1"
#: The fake "now" every test starts from, epoch milliseconds.
T0_MS = 1_800_000_000_000
MINUTE_MS = 60_000


def body_for(seq: int, size: int = 2048) -> bytes:
    """A distinctive body per batch (a canary: it must never reach the disk)."""
    unit = f"PLAINTEXT-{seq:06d}|".encode()
    return (unit * (size // len(unit) + 1))[:size]


def make_batch(
    seq: int,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    size: int = 2048,
    dataset_key_id: str = DATASET_ID,
    apps: tuple[str, ...] = ("editor",),
    batch_id: str | None = None,
) -> Batch:
    start = T0_MS + seq * MINUTE_MS if start_ms is None else start_ms
    end = start + MINUTE_MS - 1 if end_ms is None else end_ms
    body = body_for(seq, size)
    header = BatchHeader(
        device_id=DEVICE_ID,
        batch_id=f"{seq:032x}" if batch_id is None else batch_id,
        seq=seq,
        start_ms=start,
        end_ms=end,
        policy_version=1,
        dataset_key_id=dataset_key_id,
        counts=SignalCounts(clicks=seq, markers=1),
        app_ids=apps,
        body_size=len(body),
    )
    return Batch(header, body)


def make_sealed(seq: int, **kwargs: object) -> bytes:
    batch = make_batch(seq, **kwargs)  # type: ignore[arg-type]
    return seal_batch(batch.header.to_json(), batch.body, DATASET.public_key(), DEVICE)


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now_ms: int = T0_MS) -> None:
        self.now = now_ms / 1000

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def ms(self) -> int:
        return int(self.now * 1000)
