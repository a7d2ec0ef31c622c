"""The collector's bounds, against the real process: memory, connections, rates, deadlines.

Each test starts its own ``overt collector serve`` (``test_process.start_collector``)
with the bound it looks at set low enough to keep the test short. Every
load goes to 127.0.0.1, is bounded in count, and stops by itself; times are
guards against a hung test, never asserted figures.

- 100 strangers each sending an 8 MiB body: answered 401 from their
  headers, and the collector's RSS grows by less than ``RSS_BOUND``.
- 1,000 idle connections against a collector whose file limit is 512: it
  keeps at most what the limit leaves room for, closes the longest-idle to
  make room, and an honest device's uploads all succeed.
- a connection that sends nothing, or its head a byte at a time, is closed
  at the header deadline; a body that stalls gets 408.
- past the requests-in-flight cap: 503 with ``Retry-After``; past the
  connection cap with every connection in a request: the same; past one
  device's share of requests in flight: 429 for that device only.
- a flood from one device gets 429 with ``Retry-After`` while other devices
  keep uploading.
"""

from __future__ import annotations

import resource
import select
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from overt.wire.sealed import MAX_SEALED_BYTES

from ._build import Device
from .test_process import DEADLINE, RunningCollector, _enroll, _now_ms, _upload, start_collector

#: How much the collector's RSS may grow while 100 strangers send 8 MiB each
#: (it used to hold every body until it was complete: 800 MiB).
RSS_BOUND = 64 * 2**20


def _head(device: Device, extra: str, path: str = "/v1/batches") -> bytes:
    """A request head signed by ``device`` over an empty body."""
    signed = device.sign("POST", path, b"", _now_ms())
    lines = "".join(f"{name}: {value}\r\n" for name, value in signed.items())
    return f"POST {path} HTTP/1.1\r\nHost: collector\r\n{lines}{extra}\r\n".encode()


def _connect(running: RunningCollector) -> socket.socket:
    return socket.create_connection((running.host, running.port), timeout=DEADLINE)


def _status(conn: socket.socket) -> int:
    """The status of the next answer on ``conn`` (0 if the connection closed first)."""
    answer = b""
    while b"\r\n" not in answer:
        try:
            data = conn.recv(4096)
        except OSError:
            return 0
        if not data:
            return 0
        answer += data
    return int(answer.split(b" ", 2)[1])


def _answer(conn: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = conn.recv(4096)
        if not data:
            break
        answer += data
    return answer


def _closed_by_server(conn: socket.socket, within: float) -> bool:
    """Whether the server closes ``conn`` within ``within`` seconds (reading what it sends)."""
    end = time.monotonic() + within
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([conn], [], [], left)
        if ready:
            try:
                if not conn.recv(4096):
                    return True
            except OSError:
                return True
    return False


def _file_limit(n: int) -> Callable[[], None]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return limit


# ------------------------------------------------------------------ memory


def test_strangers_large_bodies_do_not_grow_the_collectors_memory(tmp_path: Path) -> None:
    data = tmp_path / "collector"
    # No address rate: every stranger must get as far as its headers' check.
    running = start_collector(data, "--address-rate", "0")
    try:
        [device] = _enroll(running.url, data, 1)
        with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
            assert _upload(client, device, device.sealed(1)).status_code == 201
        server = psutil.Process(running.proc.pid)
        base = peak = server.memory_info().rss
        chunk = b"\x00" * 2**20
        done = threading.Event()

        def stranger(n: int) -> int:
            with _connect(running) as conn:
                conn.sendall(
                    _head(Device(f"stranger-{n}"), f"Content-Length: {MAX_SEALED_BYTES}\r\n")
                )
                try:
                    for _ in range(MAX_SEALED_BYTES // len(chunk)):
                        conn.sendall(chunk)
                except OSError:
                    pass  # closed after its answer: what matters is the answer
                return _status(conn)

        with ThreadPoolExecutor(max_workers=100) as pool:
            futures = [pool.submit(stranger, n) for n in range(100)]

            def finish() -> None:
                for future in futures:
                    future.result()
                done.set()

            pool.submit(finish)
            while not done.wait(0.02):
                peak = max(peak, server.memory_info().rss)
            statuses = [f.result() for f in futures]
        peak = max(peak, server.memory_info().rss)
        assert statuses == [401] * 100
        assert peak - base < RSS_BOUND, f"RSS grew by {(peak - base) / 2**20:.0f} MiB"
        with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
            assert _upload(client, device, device.sealed(2)).status_code == 201
    finally:
        assert running.stop() == 0


# ------------------------------------------------------------- connections


def test_idle_connections_at_a_low_file_limit_do_not_stop_an_honest_device(
    tmp_path: Path,
) -> None:
    data = tmp_path / "collector"
    running = start_collector(
        data, "--header-timeout", "60", "--address-rate", "0", preexec_fn=_file_limit(512)
    )
    idle: list[socket.socket] = []
    try:
        [device] = _enroll(running.url, data, 1)
        for n in range(1000):
            conn = _connect(running)
            if n % 2:
                conn.sendall(b"POST /v1/batches HTTP/1.1\r\n")  # half a head, never finished
            idle.append(conn)
        server = psutil.Process(running.proc.pid)
        with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
            for seq in range(1, 21):
                answer = _upload(client, device, device.sealed(seq))
                assert answer.status_code == 201, (seq, answer.text)
                assert server.num_fds() <= 512
        # The collector closed the longest-idle strangers to make room, and
        # holds no more than its file limit leaves room for.
        closed = sum(_closed_by_server(conn, 0.01) for conn in idle)
        assert closed >= 1000 - 512
        assert len(server.net_connections("tcp")) <= 512
    finally:
        for conn in idle:
            conn.close()
        assert running.stop() == 0


def test_a_connection_that_sends_no_complete_head_is_closed_at_the_deadline(
    tmp_path: Path,
) -> None:
    running = start_collector(tmp_path / "collector", "--header-timeout", "1")
    try:
        with _connect(running) as silent, _connect(running) as slow:
            head = b"GET /openapi.json HTTP/1.1\r\nHost: collector\r\nX-Slow: "
            closed = False
            end = time.monotonic() + DEADLINE
            for byte in head + b"a" * 1000:
                # One byte every 0.2 s: a head that would never finish.
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                if _closed_by_server(slow, 0.2) or time.monotonic() > end:
                    closed = True
                    break
            assert closed
            assert _closed_by_server(silent, DEADLINE)
        # A connection that sends its head in time is served as ever.
        answer = httpx.get(f"{running.url}/openapi.json", timeout=DEADLINE)
        assert answer.status_code == 200
    finally:
        assert running.stop() == 0


def test_a_body_that_stalls_gets_408_and_its_connection_closed(tmp_path: Path) -> None:
    data = tmp_path / "collector"
    running = start_collector(data, "--body-timeout", "1")
    try:
        [device] = _enroll(running.url, data, 1)
        with _connect(running) as conn:
            conn.sendall(_head(device, "Content-Length: 1000\r\n") + b"x" * 10)
            answer = _answer(conn)
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert b"connection: close" in answer.lower()
            assert _closed_by_server(conn, DEADLINE)
    finally:
        assert running.stop() == 0


def test_requests_past_the_in_flight_cap_get_503_with_retry_after(tmp_path: Path) -> None:
    data = tmp_path / "collector"
    running = start_collector(data, "--max-requests", "2")
    try:
        devices = _enroll(running.url, data, 2)
        held = [_connect(running) for _ in devices]
        for conn, device in zip(held, devices, strict=True):
            conn.sendall(_head(device, "Content-Length: 1000\r\n") + b"x" * 10)
        time.sleep(0.5)  # both admitted and waiting for the rest of their bodies
        answer = httpx.get(f"{running.url}/openapi.json", timeout=DEADLINE)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"] == "overloaded"
        for conn in held:
            conn.close()
        for _ in range(50):
            answer = httpx.get(f"{running.url}/openapi.json", timeout=DEADLINE)
            if answer.status_code == 200:
                break
            time.sleep(0.1)
        assert answer.status_code == 200
    finally:
        assert running.stop() == 0


def test_a_connection_past_the_cap_when_all_are_in_requests_gets_503(tmp_path: Path) -> None:
    data = tmp_path / "collector"
    running = start_collector(data, "--max-connections", "2")
    try:
        devices = _enroll(running.url, data, 2)
        held = [_connect(running) for _ in devices]
        for conn, device in zip(held, devices, strict=True):
            conn.sendall(_head(device, "Content-Length: 1000\r\n") + b"x" * 10)
        time.sleep(0.5)
        with _connect(running) as third:
            answer = _answer(third)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 1" in answer.lower()
        for conn in held:
            conn.close()
    finally:
        assert running.stop() == 0


def test_one_device_holds_at_most_its_share_of_requests_in_flight(tmp_path: Path) -> None:
    data = tmp_path / "collector"
    running = start_collector(data, "--max-device-requests", "2")
    try:
        greedy, other = _enroll(running.url, data, 2)
        held = [_connect(running) for _ in range(2)]
        for conn in held:
            conn.sendall(_head(greedy, "Content-Length: 1000\r\n") + b"x" * 10)
        time.sleep(0.5)
        with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
            third = _upload(client, greedy, greedy.sealed(1))
            assert third.status_code == 429
            assert third.headers["retry-after"] == "1"
            assert _upload(client, other, other.sealed(1)).status_code == 201
            for conn in held:
                conn.close()
            for _ in range(50):
                if (answer := _upload(client, greedy, greedy.sealed(1))).status_code != 429:
                    break
                time.sleep(0.1)
            assert answer.status_code == 201
    finally:
        assert running.stop() == 0


# ------------------------------------------------------------------- rates


def test_a_flood_from_one_device_gets_429_while_other_devices_keep_uploading(
    tmp_path: Path,
) -> None:
    data = tmp_path / "collector"
    running = start_collector(data, "--device-rate", "5", "--device-burst", "10")
    try:
        flood, *others = _enroll(running.url, data, 4)
        flooded: list[httpx.Response] = []
        stored: list[int] = []

        def keep_flooding() -> None:
            with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
                for seq in range(1, 101):
                    flooded.append(_upload(client, flood, flood.sealed(seq)))

        def upload_honestly(device: Device) -> None:
            with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
                for seq in range(1, 11):  # within its burst
                    stored.append(_upload(client, device, device.sealed(seq)).status_code)

        threads = [threading.Thread(target=keep_flooding)]
        threads += [threading.Thread(target=upload_honestly, args=(d,)) for d in others]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=DEADLINE)
        assert stored == [201] * 30
        refused = [a for a in flooded if a.status_code == 429]
        assert len(refused) >= 50
        assert {a.status_code for a in flooded} <= {201, 429}
        for answer in refused:
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.json()["error"] == "rate_limited"
    finally:
        assert running.stop() == 0
