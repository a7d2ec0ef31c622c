"""The uploader against an in-memory collector (httpx.MockTransport) that speaks
docs/PROTOCOL.md and checks every request signature: ordering, retry rules,
backoff, Retry-After, dead letters, duplicates after a crash, upload
conditions, the daily budget and erasure requests. Time is a fake clock."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from agent.pipeline.decision import CaptureState
from agent.sinks.spool import Spool
from agent.sinks.upload import (
    Backoff,
    RequestSigner,
    Uploader,
    UploadSettings,
    UploadState,
    parse_retry_after,
)
from agent.sources.power import FakeConditions
from overt.wire.sealed import MEDIA_TYPE, parse_sealed, verify_sealed
from overt.wire.signature import verify_request
from policies.model import Category, UploadRules

from ..pipeline._build import make_grant, make_policy
from ._build import DEVICE, DEVICE_ID, MINUTE_MS, T0_MS, FakeClock, make_sealed

NOW_MS = T0_MS + 100 * MINUTE_MS
BASE_URL = "https://collector.test"
SETTINGS = UploadSettings(base_delay_s=1.0, max_delay_s=60.0, recheck_s=30.0)
DAY_S = 86_400.0


class TopRng(random.Random):
    """Full jitter drawn at its ceiling, so the delays show the exponential."""

    def uniform(self, a: float, b: float) -> float:
        return b


class BottomRng(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


Reply = int | httpx.Response | Exception


class Collector:
    """The collector's batch and erasure endpoints, in memory, strict about signatures."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.stored: dict[tuple[str, int], bytes] = {}
        self.posts: list[tuple[str, int | None]] = []  # (path, seq)
        self.erasures: list[dict[str, object]] = []
        self.script: list[Reply] = []  # answers to give first, one per request
        self.received = threading.Event()

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        target = request.url.raw_path.decode()
        verify_request(
            request.headers, request.method, target, body, DEVICE.public_key(), self.clock.ms
        )
        seq = None
        if target.endswith("/v1/batches"):
            assert request.headers["content-type"] == MEDIA_TYPE
            seq = parse_sealed(body).seq
        self.posts.append((target, seq))
        if self.script:
            reply = self.script.pop(0)
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply, int):
                return httpx.Response(reply, json={"error": f"e{reply}"})
            return reply
        try:
            if target.endswith("/v1/erasure"):
                self.erasures.append(json.loads(body))
                return httpx.Response(200, json={"deleted": 1})
            return self._batch(body)
        finally:
            self.received.set()

    def _batch(self, body: bytes) -> httpx.Response:
        sealed = parse_sealed(body)
        verify_sealed(sealed, DEVICE.public_key())
        key = (sealed.device_id, sealed.seq)
        if key in self.stored:
            if self.stored[key] != body:
                return httpx.Response(409, json={"error": "sequence_conflict"})
            return httpx.Response(200, json={"status": "duplicate", "seq": sealed.seq})
        self.stored[key] = body
        return httpx.Response(201, json={"status": "stored", "seq": sealed.seq})

    def batch_posts(self) -> list[int | None]:
        return [seq for path, seq in self.posts if path.endswith("/v1/batches")]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW_MS)


@pytest.fixture
def collector(clock: FakeClock) -> Collector:
    return Collector(clock)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path)
    yield s
    s.close()


def state_with(upload: UploadRules | None = None, **kwargs: object) -> CaptureState:
    return CaptureState.build(make_policy(upload=upload), **kwargs)  # type: ignore[arg-type]


def make_uploader(
    spool: Spool,
    collector: Collector,
    clock: FakeClock,
    *,
    state: CaptureState | Callable[[], CaptureState] | None = None,
    conditions: FakeConditions | None = None,
    rng: random.Random | None = None,
    base_url: str = BASE_URL,
    signer: RequestSigner | bool | None = True,
) -> Uploader:
    client = httpx.Client(base_url=base_url, transport=httpx.MockTransport(collector.handle))
    fixed = state or state_with()
    get_state = fixed if callable(fixed) else (lambda: fixed)
    return Uploader(
        client,
        spool,
        RequestSigner(DEVICE_ID, DEVICE) if signer is True else signer or None,
        clock,
        get_state,
        conditions or FakeConditions(),
        rng=rng or TopRng(),
        settings=SETTINGS,
    )


def spool_batches(spool: Spool, *seqs: int, hold_until_ms: int = NOW_MS, size: int = 2048) -> int:
    total = 0
    for seq in seqs:
        sealed = make_sealed(seq, size=size)
        spool.put(sealed, now_ms=NOW_MS - 1, hold_until_ms=hold_until_ms)
        total += len(sealed)
    return total


# ------------------------------------------------------------------ happy path


def test_ready_batches_go_in_sequence_order_and_are_acked(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    total = spool_batches(spool, 3, 1, 2)
    uploader = make_uploader(spool, collector, clock)
    delay = uploader.run_once(clock())
    assert collector.batch_posts() == [1, 2, 3]
    assert sorted(collector.stored) == [(DEVICE_ID, 1), (DEVICE_ID, 2), (DEVICE_ID, 3)]
    assert spool.stats(clock.ms).batches == 0
    entries = spool.ledger.recent(1, clock.ms)
    assert {e.state.value for e in entries} == {"uploaded"}
    assert {e.destination for e in entries} == {BASE_URL}
    status = uploader.status()
    assert status.state is UploadState.IDLE
    assert (status.last_success_ms, status.today_bytes) == (clock.ms, total)
    assert delay == SETTINGS.recheck_s


def test_held_batches_wait_for_their_review_window(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    spool_batches(spool, 1, hold_until_ms=NOW_MS + 10_000)
    uploader = make_uploader(spool, collector, clock)
    assert uploader.run_once(clock()) == pytest.approx(10.0)
    assert collector.posts == []
    clock.advance(10)
    uploader.run_once(clock())
    assert collector.batch_posts() == [1]


def test_the_signed_target_is_the_path_as_sent_under_a_base_path(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    spool_batches(spool, 1)
    uploader = make_uploader(spool, collector, clock, base_url=BASE_URL + "/overt/")
    uploader.run_once(clock())
    assert collector.posts == [("/overt/v1/batches", 1)]  # and its signature verified
    assert uploader.destination == BASE_URL + "/overt"


def test_a_duplicate_answer_acknowledges_the_batch(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    sealed = make_sealed(1)
    spool.put(sealed, now_ms=NOW_MS, hold_until_ms=NOW_MS)
    collector.stored[(DEVICE_ID, 1)] = sealed  # it got there before
    make_uploader(spool, collector, clock).run_once(clock())
    assert spool.stats(clock.ms).batches == 0
    assert spool.ledger.recent(1, clock.ms)[0].state.value == "uploaded"


def test_a_crash_between_post_and_ack_resends_and_the_duplicate_acks(
    tmp_path: Path, collector: Collector, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path)
    spool_batches(spool, 1, 2)

    def die(*args: object, **kwargs: object) -> None:
        raise SystemExit("killed after the POST, before the ack")

    monkeypatch.setattr(spool, "ack", die)
    with pytest.raises(SystemExit):
        make_uploader(spool, collector, clock).run_once(clock())
    spool.close()
    assert collector.batch_posts() == [1]

    spool = Spool(tmp_path)  # the agent starts again
    try:
        make_uploader(spool, collector, clock).run_once(clock())
        assert collector.batch_posts() == [1, 1, 2]
        assert len(collector.stored) == 2  # no duplicate stored
        assert spool.stats(clock.ms).batches == 0
        assert [e.state.value for e in spool.ledger.recent(1, clock.ms)] == ["uploaded"] * 2
    finally:
        spool.close()


# ------------------------------------------------------------- retry rules


@pytest.mark.parametrize(
    "reply",
    [
        500,
        502,
        503,
        408,
        429,
        302,
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("cut"),
    ],
    ids=lambda r: str(r) if isinstance(r, int) else type(r).__name__,
)
def test_transient_failures_keep_the_batch_and_back_off(
    spool: Spool, collector: Collector, clock: FakeClock, reply: Reply
) -> None:
    spool_batches(spool, 1, 2)
    collector.script = [reply]
    uploader = make_uploader(spool, collector, clock)
    delay = uploader.run_once(clock())
    assert delay == SETTINGS.base_delay_s
    assert spool.stats(clock.ms).batches == 2
    status = uploader.status()
    assert status.state is UploadState.WAITING
    assert "retrying" in status.why
    assert status.next_attempt_ms == clock.ms + 1000
    assert spool.dead_letters() == []
    clock.advance(delay)
    uploader.run_once(clock())
    assert spool.stats(clock.ms).batches == 0
    assert collector.batch_posts() == [1, 1, 2]


def test_backoff_doubles_up_to_its_cap_and_resets_on_success(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    spool_batches(spool, 1)
    collector.script = [503] * 9
    uploader = make_uploader(spool, collector, clock)
    delays = []
    for _ in range(9):
        delay = uploader.run_once(clock())
        delays.append(delay)
        # Before the deadline a step sends nothing and says how long is left.
        posts = len(collector.posts)
        clock.advance(delay / 2)
        assert uploader.run_once(clock()) == pytest.approx(delay / 2)
        assert len(collector.posts) == posts
        clock.advance(delay / 2)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    uploader.run_once(clock())  # the tenth attempt succeeds
    assert spool.stats(clock.ms).batches == 0
    spool_batches(spool, 2)
    collector.script = [503]
    assert uploader.run_once(clock()) == 1  # back to the first delay


def test_backoff_has_full_jitter_from_the_injected_rng() -> None:
    backoff = Backoff(SETTINGS, random.Random(7))
    mirror = random.Random(7)
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60]
    assert delays == [mirror.uniform(0, c) for c in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)


def test_retry_after_seconds_is_honoured(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    spool_batches(spool, 1)
    collector.script = [httpx.Response(429, headers={"Retry-After": "120"})]
    uploader = make_uploader(spool, collector, clock, rng=BottomRng())
    assert uploader.run_once(clock()) == 120
    clock.advance(119)
    uploader.run_once(clock())
    assert collector.batch_posts() == [1]
    clock.advance(1)
    uploader.run_once(clock())
    assert collector.batch_posts() == [1, 1]


def test_retry_after_as_an_http_date_is_honoured(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    spool_batches(spool, 1)
    when = datetime.fromtimestamp(clock() + 300, tz=UTC)
    collector.script = [httpx.Response(503, headers={"Retry-After": format_datetime(when, True)})]
    uploader = make_uploader(spool, collector, clock, rng=BottomRng())
    assert uploader.run_once(clock()) == pytest.approx(300)


def test_a_huge_retry_after_is_capped() -> None:
    backoff = Backoff(SETTINGS, BottomRng())
    assert backoff.next_delay(retry_after_s=10**9) == SETTINGS.max_retry_after_s


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 0 ", 0.0),
        ("Sun, 15 Jan 2027 08:00:30 GMT", None),  # computed below
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    now = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()
    got = parse_retry_after(value, now)
    if value and "GMT" in value:
        assert got == 30.0
    else:
        assert got == seconds


@pytest.mark.parametrize("status", [400, 403, 404, 409, 413, 422])
def test_a_refusal_dead_letters_the_batch_and_the_queue_moves_on(
    spool: Spool, collector: Collector, clock: FakeClock, status: int
) -> None:
    spool_batches(spool, 1, 2)
    collector.script = [status]
    uploader = make_uploader(spool, collector, clock)
    uploader.run_once(clock())
    (dead,) = spool.dead_letters()
    assert (dead.seq, dead.status) == (1, status)
    assert f"e{status}" in dead.error
    assert list(collector.stored) == [(DEVICE_ID, 2)]
    assert spool.stats(clock.ms).dead == 1
    assert uploader.status().state is UploadState.IDLE
    states = {e.seq: e.state.value for e in spool.ledger.recent(1, clock.ms)}
    assert states == {1: "dead", 2: "uploaded"}


def test_401_keeps_the_batch_and_reports_not_enrolled(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    spool_batches(spool, 1)
    collector.script = [401]
    uploader = make_uploader(spool, collector, clock)
    uploader.run_once(clock())
    assert uploader.status().state is UploadState.NOT_ENROLLED
    assert spool.stats(clock.ms).batches == 1
    assert spool.dead_letters() == []
    # Re-enrolled: the next step goes at once.
    uploader.set_signer(RequestSigner(DEVICE_ID, DEVICE))
    uploader.run_once(clock())
    assert spool.stats(clock.ms).batches == 0


def test_without_a_signer_nothing_is_sent(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    spool_batches(spool, 1)
    uploader = make_uploader(spool, collector, clock, signer=None)
    assert uploader.run_once(clock()) == SETTINGS.recheck_s
    assert collector.posts == []
    assert uploader.status().state is UploadState.NOT_ENROLLED


def test_a_spool_error_backs_off_instead_of_crashing(
    tmp_path: Path, collector: Collector, clock: FakeClock
) -> None:
    spool = Spool(tmp_path)
    uploader = make_uploader(spool, collector, clock)
    spool.close()
    assert uploader.run_once(clock()) == SETTINGS.base_delay_s
    assert "spool" in uploader.status().why


# ------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("rules", "host", "state", "why"),
    [
        (UploadRules(ac_only=True), FakeConditions(on_battery=True), "waiting", "battery"),
        (UploadRules(unmetered_only=True), FakeConditions(metered=True), "waiting", "metered"),
        (UploadRules(daily_bytes=0), FakeConditions(), "waiting", "budget"),
    ],
    ids=["on-battery", "metered", "no-budget"],
)
def test_a_condition_that_does_not_hold_blocks_batches(
    spool: Spool,
    collector: Collector,
    clock: FakeClock,
    rules: UploadRules,
    host: FakeConditions,
    state: str,
    why: str,
) -> None:
    spool_batches(spool, 1)
    uploader = make_uploader(spool, collector, clock, state=state_with(rules), conditions=host)
    assert uploader.run_once(clock()) == SETTINGS.recheck_s
    assert collector.posts == []
    status = uploader.status()
    assert status.state.value == state
    assert why in status.why
    assert status.next_attempt_ms == clock.ms + 30_000


@pytest.mark.parametrize(
    "host",
    [
        FakeConditions(on_battery=None, metered=None),
        FakeConditions(on_battery=True, metered=False),
        FakeConditions(on_battery=False, metered=True),
    ],
    ids=["unknown-is-allowed", "battery-allowed", "metered-allowed"],
)
def test_conditions_the_policy_does_not_ask_for_do_not_block(
    spool: Spool, collector: Collector, clock: FakeClock, host: FakeConditions
) -> None:
    spool_batches(spool, 1)
    rules = UploadRules(ac_only=host.on_battery is None, unmetered_only=host.metered is None)
    uploader = make_uploader(spool, collector, clock, state=state_with(rules), conditions=host)
    uploader.run_once(clock())
    assert collector.batch_posts() == [1]


def test_a_bandwidth_exemption_makes_metered_networks_wait(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    spool_batches(spool, 1)
    grant = make_grant(Category.BANDWIDTH, expires=clock() + DAY_S)
    state = state_with(UploadRules(unmetered_only=False), grants=(grant,))
    host = FakeConditions(metered=True)
    uploader = make_uploader(spool, collector, clock, state=state, conditions=host)
    uploader.run_once(clock())
    assert collector.posts == []
    assert uploader.status().daily_budget == 5 * 2**20
    host.metered = False
    uploader.run_once(clock())
    assert collector.batch_posts() == [1]


@pytest.mark.parametrize(
    ("policy_state", "why"),
    [(CaptureState(), "no policy"), (None, "expired")],
    ids=["no-policy", "expired"],
)
def test_without_a_valid_policy_uploads_are_blocked(
    spool: Spool,
    collector: Collector,
    clock: FakeClock,
    policy_state: CaptureState | None,
    why: str,
) -> None:
    spool_batches(spool, 1)
    uploader = make_uploader(spool, collector, clock, state=policy_state or state_with())
    if policy_state is None:
        clock.advance(30 * DAY_S)  # past the policy's expiry
        spool_batches(spool, 2, hold_until_ms=clock.ms)
    uploader.run_once(clock())
    assert collector.posts == []
    assert uploader.status().state is UploadState.BLOCKED
    assert why in uploader.status().why


def test_the_daily_budget_is_counted_per_local_day(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    one = len(make_sealed(1))
    spool_batches(spool, 1, 2, 3, 4)
    state = state_with(UploadRules(daily_bytes=2 * one + one // 2))
    uploader = make_uploader(spool, collector, clock, state=state)
    uploader.run_once(clock())
    assert collector.batch_posts() == [1, 2]
    status = uploader.status()
    assert (status.state, status.today_bytes) == (UploadState.WAITING, 2 * one)
    assert "budget" in status.why
    clock.advance(60)
    uploader.run_once(clock())
    assert collector.batch_posts() == [1, 2]  # still the same day
    clock.advance(DAY_S)
    uploader.run_once(clock())
    assert collector.batch_posts() == [1, 2, 3, 4]
    days = spool.ledger.uploaded_per_day(2, clock.ms)
    assert [d.bytes_uploaded for d in days] == [2 * one, 2 * one]


def test_a_batch_larger_than_the_whole_daily_budget_is_reported_blocked(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    spool_batches(spool, 1, size=4096)
    uploader = make_uploader(
        spool, collector, clock, state=state_with(UploadRules(daily_bytes=100))
    )
    uploader.run_once(clock())
    assert collector.posts == []
    status = uploader.status()
    assert status.state is UploadState.BLOCKED
    assert "larger than the whole daily upload budget" in status.why


# ----------------------------------------------------------------- erasure


def _uploaded_then_discarded(spool: Spool, collector: Collector, clock: FakeClock) -> None:
    spool_batches(spool, 1)
    make_uploader(spool, collector, clock).run_once(clock())
    result = spool.discard(T0_MS, clock.ms)
    assert result.erasure_requested


def test_an_erasure_request_is_sent_signed_and_then_forgotten(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    _uploaded_then_discarded(spool, collector, clock)
    make_uploader(spool, collector, clock).run_once(clock())
    assert collector.erasures == [
        {
            "start_ms": T0_MS + MINUTE_MS,
            "end_ms": T0_MS + 2 * MINUTE_MS - 1,
            "reason": "discarded by the employee",
        }
    ]
    assert spool.pending_erasures() == []


def test_an_erasure_request_goes_even_when_batches_may_not(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    _uploaded_then_discarded(spool, collector, clock)
    spool_batches(spool, 2)
    uploader = make_uploader(
        spool,
        collector,
        clock,
        state=state_with(UploadRules(ac_only=True)),
        conditions=FakeConditions(on_battery=True),
    )
    uploader.run_once(clock())
    assert len(collector.erasures) == 1
    assert collector.batch_posts() == [1]  # only the first, earlier upload


def test_a_failed_erasure_request_is_kept_and_retried(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    _uploaded_then_discarded(spool, collector, clock)
    collector.script = [503]
    uploader = make_uploader(spool, collector, clock)
    delay = uploader.run_once(clock())
    assert collector.erasures == []
    assert spool.pending_erasures()[0].attempts == 1
    clock.advance(delay)
    uploader.run_once(clock())
    assert len(collector.erasures) == 1
    assert spool.pending_erasures() == []


def test_a_refused_erasure_request_is_kept_not_resent_and_batches_continue(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    _uploaded_then_discarded(spool, collector, clock)
    spool_batches(spool, 2)
    collector.script = [422]
    uploader = make_uploader(spool, collector, clock)
    uploader.run_once(clock())
    assert spool.pending_erasures() == []
    assert collector.batch_posts()[-1] == 2
    uploader.run_once(clock())
    assert sum(path.endswith("erasure") for path, _ in collector.posts) == 1


# ------------------------------------------------------------------ status


def test_the_status_has_the_control_api_shape(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    uploader = make_uploader(spool, collector, clock)
    uploader.run_once(clock())
    assert uploader.status().to_dict() == {
        "state": "idle",
        "why": "",
        "last_success_ms": None,
        "today_bytes": 0,
        "daily_budget": 50 * 2**20,
        "next_attempt_ms": None,
    }


# ------------------------------------------------------------------ thread


def test_the_thread_uploads_when_woken_and_stops_promptly(
    spool: Spool, collector: Collector, clock: FakeClock
) -> None:
    uploader = make_uploader(spool, collector, clock)
    uploader.start()
    try:
        with pytest.raises(RuntimeError):
            uploader.start()
        spool_batches(spool, 1)
        uploader.wake()
        assert collector.received.wait(30)
    finally:
        uploader.stop(timeout=30)
    assert collector.batch_posts() == [1]
    assert not any(t.name == "overt-upload" for t in threading.enumerate())
