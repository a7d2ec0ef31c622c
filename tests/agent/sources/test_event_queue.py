"""EventQueue: bounded, never blocks the producer, reports losses in order."""

from __future__ import annotations

import threading

import pytest

from agent.events import Gap, KeyEvent, MouseMove
from agent.sources.input import DECODE_ERROR, OVERFLOW, EventQueue


class StepClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def move(i: int) -> MouseMove:
    return MouseMove(float(i), i, i)


def test_events_come_out_in_the_order_they_went_in() -> None:
    q = EventQueue()
    for i in range(5):
        q.put(move(i))
    assert q.drain() == [move(i) for i in range(5)]
    assert q.drain() == []


def test_overflow_drops_and_the_next_drain_ends_with_a_gap_counting_the_drops() -> None:
    clock = StepClock()
    q = EventQueue(maxsize=3, clock=clock)
    accepted = [q.put(move(i)) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert q.drain() == [move(0), move(1), move(2), Gap(101.0, OVERFLOW, 2)]
    assert q.drain() == []
    assert q.dropped_total == 2


def test_gap_sits_between_events_queued_before_and_after_the_overflow() -> None:
    q = EventQueue(maxsize=2, clock=StepClock())
    q.put(move(0))
    q.put(move(1))
    q.put(move(2))  # dropped
    assert q.get(timeout=0) == move(0)  # room again
    q.put(move(3))
    assert q.drain() == [move(1), Gap(101.0, OVERFLOW, 1), move(3)]


def test_get_returns_the_gap_when_only_drops_are_pending() -> None:
    q = EventQueue(maxsize=1, clock=StepClock())
    q.put(move(0))
    q.put(move(1))
    assert q.get(timeout=0) == move(0)
    assert q.get(timeout=0) == Gap(101.0, OVERFLOW, 1)
    assert q.get(timeout=0) is None


def test_get_waits_up_to_the_timeout_and_returns_none() -> None:
    assert EventQueue().get(timeout=0.01) is None


def test_get_wakes_when_another_thread_puts() -> None:
    q = EventQueue()
    timer = threading.Timer(0.02, q.put, args=(move(7),))
    timer.start()
    assert q.get(timeout=5) == move(7)
    timer.join()


def test_put_on_a_full_queue_never_blocks() -> None:
    q = EventQueue(maxsize=10)
    done = threading.Event()

    def flood() -> None:
        for i in range(50_000):
            q.put(move(i))
        done.set()

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert done.is_set()
    events = q.drain()
    assert len(events) == 11
    assert events[-1] == Gap(events[-1].t, OVERFLOW, 50_000 - 10)


def test_concurrent_producers_lose_nothing_uncounted() -> None:
    q = EventQueue(maxsize=500)
    producers, per_producer = 4, 5_000
    received: list[object] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set() or len(q):
            received.extend(q.drain())

    def produce() -> None:
        for i in range(per_producer):
            q.put(move(i))

    consumer = threading.Thread(target=consume)
    consumer.start()
    threads = [threading.Thread(target=produce) for _ in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    consumer.join()
    received.extend(q.drain())
    events = sum(1 for e in received if isinstance(e, MouseMove))
    lost = sum(e.count for e in received if isinstance(e, Gap))
    assert events + lost == producers * per_producer


def test_raw_entries_are_decoded_on_the_consumer_side() -> None:
    q = EventQueue()
    seen_threads: list[str] = []

    def decode(t: float, key: str) -> KeyEvent:
        seen_threads.append(threading.current_thread().name)
        return KeyEvent(t, key, True, key)

    producer = threading.Thread(target=q.put_raw, args=(decode, (1.0, "a")), name="hook")
    producer.start()
    producer.join()
    assert seen_threads == []
    assert q.drain() == [KeyEvent(1.0, "a", True, "a")]
    assert seen_threads == [threading.current_thread().name]


def test_a_decoder_returning_none_is_skipped() -> None:
    q = EventQueue()
    q.put_raw(lambda t: None, (1.0,))
    q.put(move(1))
    assert q.get(timeout=0) == move(1)


def test_a_failing_decoder_becomes_a_decode_error_gap() -> None:
    q = EventQueue()

    def broken(t: float) -> KeyEvent:
        raise ValueError("boom")

    q.put_raw(broken, (5.0,))
    assert q.drain() == [Gap(5.0, DECODE_ERROR, 1)]


def test_lose_is_reported_like_an_overflow() -> None:
    q = EventQueue(clock=StepClock())
    q.lose(3)
    assert q.drain() == [Gap(101.0, OVERFLOW, 3)]


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventQueue(maxsize=0)
