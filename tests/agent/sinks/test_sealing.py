"""The sealing sink: batches reach the spool sealed to the policy's dataset key,
signed by the device, held for the review window — and never in plaintext."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agent.sinks.base import NotConfiguredError, SealError, Sink, SinkError, SpoolFullError
from agent.sinks.sealing import SealingSink
from agent.sinks.spool import Spool
from overt.wire.batch import Batch
from overt.wire.sealed import dataset_public_b64, open_sealed, parse_sealed, verify_sealed

from ..pipeline._build import make_policy
from ._build import (
    DATASET,
    DATASET_B64,
    DATASET_ID,
    DEVICE,
    MINUTE_MS,
    T0_MS,
    FakeClock,
    body_for,
    make_batch,
)

NOW_MS = T0_MS + 100 * MINUTE_MS


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path)
    yield s
    s.close()


@pytest.fixture
def sink(spool: Spool) -> SealingSink:
    s = SealingSink(spool, DEVICE, FakeClock(NOW_MS))
    s.configure(DATASET_ID, DATASET_B64, review_window_minutes=15, spool_max_bytes=2**24)
    return s


def test_the_sealing_sink_is_a_sink(sink: SealingSink) -> None:
    assert isinstance(sink, Sink)


def test_a_written_batch_is_sealed_signed_and_spooled(sink: SealingSink, spool: Spool) -> None:
    batch = make_batch(1)
    sink.write(batch)
    (stored,) = spool.waiting()
    sealed = parse_sealed(stored.sealed)
    assert sealed.header_bytes == batch.header.to_json()
    verify_sealed(sealed, DEVICE.public_key())
    assert open_sealed(sealed, DATASET) == batch.body


def test_no_plaintext_body_reaches_the_disk(sink: SealingSink, spool: Spool) -> None:
    for seq in range(1, 6):
        sink.write(make_batch(seq, size=8192))
    on_disk = b"".join(p.read_bytes() for p in spool.path.parent.iterdir() if p.is_file())
    assert b"PLAINTEXT-" not in on_disk
    assert body_for(3, 64)[:24] not in on_disk
    assert b"editor" in on_disk  # the plaintext header is there, as designed


def test_a_batch_is_held_for_the_review_window(spool: Spool) -> None:
    clock = FakeClock(NOW_MS)
    sink = SealingSink(spool, DEVICE, clock)
    sink.configure(DATASET_ID, DATASET_B64, review_window_minutes=15, spool_max_bytes=2**24)
    sink.write(make_batch(1))
    assert spool.next_ready(NOW_MS + 15 * MINUTE_MS - 1) is None
    assert spool.next_ready(NOW_MS + 15 * MINUTE_MS) is not None
    # A batch ending after "now" (clock skew between threads) is held from its end.
    late = make_batch(2, start_ms=NOW_MS, end_ms=NOW_MS + 5 * MINUTE_MS)
    sink.write(late)
    assert spool.next_hold_until(NOW_MS + 15 * MINUTE_MS) == NOW_MS + 20 * MINUTE_MS


def test_a_zero_review_window_makes_batches_ready_at_once(spool: Spool) -> None:
    sink = SealingSink(spool, DEVICE, FakeClock(NOW_MS))
    sink.configure(DATASET_ID, DATASET_B64, review_window_minutes=0, spool_max_bytes=2**24)
    sink.write(make_batch(1))
    assert spool.next_ready(NOW_MS) is not None


# ------------------------------------------------------------- refusals


def test_without_a_dataset_key_the_sink_refuses_to_write(spool: Spool) -> None:
    sink = SealingSink(spool, DEVICE, FakeClock(NOW_MS))
    assert not sink.configured
    with pytest.raises(NotConfiguredError):
        sink.write(make_batch(1))
    assert spool.waiting() == []


def test_a_header_naming_another_dataset_key_is_refused(sink: SealingSink, spool: Spool) -> None:
    with pytest.raises(SealError, match="dataset key 'other'"):
        sink.write(make_batch(1, dataset_key_id="other"))
    assert spool.waiting() == []


def test_after_a_key_rotation_a_batch_of_the_old_policy_is_sealed_to_its_own_key(
    sink: SealingSink, spool: Spool
) -> None:
    new = X25519PrivateKey.generate()
    sink.configure("dataset-2", dataset_public_b64(new), 15, 2**24)
    sink.write(make_batch(1))  # closed out under the old policy, names dataset-1
    sink.write(make_batch(2, dataset_key_id="dataset-2"))
    one, two = (parse_sealed(b.sealed) for b in spool.waiting())
    assert open_sealed(one, DATASET) == body_for(1)
    assert open_sealed(two, new) == body_for(2)


def test_a_key_id_cannot_be_reused_for_another_key(sink: SealingSink) -> None:
    other = dataset_public_b64(X25519PrivateKey.generate())
    with pytest.raises(SealError, match="another key"):
        sink.configure(DATASET_ID, other, 15, 2**24)


def test_a_body_size_that_lies_is_refused(sink: SealingSink, spool: Spool) -> None:
    batch = make_batch(1)
    with pytest.raises(SealError, match="body bytes"):
        sink.write(Batch(batch.header, batch.body + b"x"))
    assert spool.waiting() == []


@pytest.mark.parametrize(
    "key",
    ["not base64!", base64.b64encode(b"short").decode()],
    ids=["not-base64", "wrong-length"],
)
def test_a_bad_dataset_key_is_refused_at_configure(spool: Spool, key: str) -> None:
    sink = SealingSink(spool, DEVICE, FakeClock(NOW_MS))
    with pytest.raises(SealError):
        sink.configure(DATASET_ID, key, 15, 2**24)
    assert not sink.configured


def test_nonsense_configuration_is_refused(spool: Spool) -> None:
    sink = SealingSink(spool, DEVICE, FakeClock(NOW_MS))
    with pytest.raises(ValueError):
        sink.configure("", DATASET_B64, 15, 2**24)
    with pytest.raises(ValueError):
        sink.configure(DATASET_ID, DATASET_B64, -1, 2**24)


def test_the_spool_budget_comes_from_configure_and_a_full_spool_is_a_sink_error(
    spool: Spool,
) -> None:
    sink = SealingSink(spool, DEVICE, FakeClock(NOW_MS))
    sink.configure(DATASET_ID, DATASET_B64, 15, spool_max_bytes=5000)
    assert spool.budget_bytes == 5000
    sink.write(make_batch(1))
    with pytest.raises(SpoolFullError) as raised:
        sink.write(make_batch(2))
    assert isinstance(raised.value, SinkError)
    assert [b.seq for b in spool.waiting()] == [1]


def test_configure_from_policy_uses_the_policys_key_window_and_budget(spool: Spool) -> None:
    policy = make_policy(dataset_key_id="dataset-2026")
    sink = SealingSink(spool, DEVICE, FakeClock(NOW_MS))
    sink.configure_from_policy(policy)
    assert spool.budget_bytes == policy.spool_max_bytes
    sink.write(make_batch(1, dataset_key_id="dataset-2026"))
    (stored,) = spool.waiting()
    assert stored.hold_until_ms == NOW_MS + policy.review_window_minutes * MINUTE_MS
