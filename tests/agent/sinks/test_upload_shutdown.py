"""The uploader's last attempt at shutdown sends what the agent spooled while stopping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sinks.spool import Spool
from agent.sinks.upload import UploadState

from ._build import FakeClock
from .test_upload import NOW_MS, Collector, make_uploader, spool_batches


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW_MS)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path)
    yield s
    s.close()


def test_the_last_attempt_after_stop_sends_what_is_ready(spool: Spool, clock: FakeClock) -> None:
    collector = Collector(clock)
    uploader = make_uploader(spool, collector, clock)
    uploader.start()
    uploader.stop()
    spool_batches(spool, 1, 2)  # written by capture as the agent stopped
    uploader.last_attempt(clock())
    assert collector.batch_posts() == [1, 2]
    assert spool.stats(clock.ms).batches == 0
    assert uploader.status().state is UploadState.IDLE


def test_the_last_attempt_ignores_the_backoff(spool: Spool, clock: FakeClock) -> None:
    collector = Collector(clock)
    spool_batches(spool, 1)
    collector.script = [503]
    uploader = make_uploader(spool, collector, clock)
    assert uploader.run_once(clock()) > 0  # backing off now
    uploader.stop()
    uploader.last_attempt(clock())
    assert collector.batch_posts() == [1, 1]
    assert spool.stats(clock.ms).batches == 0
