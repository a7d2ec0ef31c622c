"""The control API under a flood of connections and with no file descriptor
left: bounded connections and threads, and pause and status always answer.

Most tests run the server in this process against a fake target. The last
runs the real agent and control server in a child process with a low
``RLIMIT_NOFILE`` (``tests.agent._control_child``), floods its socket from
here, and drives it with the real ``overt`` CLI.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.control import ControlClient, ControlServer
from overt.wire.control_results import Result
from tests.agent.test_control import FakeTarget, answer_for

ROOT = Path(__file__).resolve().parents[2]
STATUS = b'{"v":1,"cmd":"status"}\n'


def wait(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    """A connection to ``path``; a full queue of waiting connections is waited out."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(os.fspath(path))
            return sock
        except BlockingIOError:
            if time.monotonic() > deadline:
                sock.close()
                raise
            time.sleep(0.005)


def read_line(sock: socket.socket) -> dict[str, Any] | None:
    """The next answer line, or None if the server closed without one."""
    data = b""
    try:
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    except ConnectionResetError:
        return None
    answer: dict[str, Any] = json.loads(data.partition(b"\n")[0])
    return answer


def control_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("overt-control")]


class SlowLedger(FakeTarget):
    """A target whose ``ledger`` waits until released (a slow store, a slow collector)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.in_ledger = 0
        self._count = threading.Lock()

    def ledger(self, days: int) -> Any:
        with self._count:
            self.in_ledger += 1
        self.release.wait(10)
        return super().ledger(days)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "agent.sock"


@contextlib.contextmanager
def serving(target: FakeTarget, path: Path, **options: Any) -> Iterator[ControlServer]:
    server = ControlServer(target, path, line_timeout=5.0, **options)
    server.start()
    try:
        yield server
    finally:
        if target.hold is not None:
            target.hold.set()
        if isinstance(target, SlowLedger):
            target.release.set()
        server.stop()


# ------------------------------------------------------------ many connections


def test_idle_connections_beyond_the_limit_push_out_the_oldest_and_status_answers(
    sock_path: Path,
) -> None:
    target = FakeTarget()
    with serving(target, sock_path, max_connections=8) as server:
        idle = [connect(sock_path) for _ in range(40)]
        try:
            wait(lambda: server.open_connections() == 8, what="the limit to be reached")
            assert ControlClient(sock_path).status() == answer_for("status")
            assert server.open_connections() <= 8
            # The oldest were told why before they were closed; the newest stay open.
            pushed_out = read_line(idle[0])
            assert pushed_out is not None
            assert pushed_out["error"] == "busy"
            assert "nothing was done" in pushed_out["message"]
            idle[-1].sendall(STATUS)
            answer = read_line(idle[-1])
            assert answer is not None
            assert answer["ok"] is True
        finally:
            for sock in idle:
                sock.close()
        wait(lambda: server.open_connections() == 0, what="closed connections to go")
    assert all(call == ("status", ()) for call in target.calls)


def test_a_newcomer_when_every_connection_is_busy_is_answered_busy_and_the_client_retries(
    sock_path: Path,
) -> None:
    target = FakeTarget()
    target.hold = threading.Event()
    with serving(target, sock_path, max_connections=2, command_threads=3):
        pausing = [connect(sock_path) for _ in range(2)]
        for sock in pausing:
            sock.sendall(b'{"v":1,"cmd":"pause"}\n')
        assert target.holding.wait(5)
        time.sleep(0.1)  # both are with a command thread now
        refused = connect(sock_path)
        # Answered while both slots are still held: it was not queued behind them.
        answer = read_line(refused)
        assert answer is not None
        assert answer["error"] == "busy"
        refused.close()

        answers: list[Result] = []
        asking = threading.Thread(target=lambda: answers.append(ControlClient(sock_path).status()))
        asking.start()
        time.sleep(0.3)  # the client is turned away, and asks again
        assert answers == []
        target.hold.set()
        asking.join(5)
        assert answers == [answer_for("status")]
        for sock in pausing:
            assert read_line(sock) is not None
            sock.close()


def test_slow_commands_leave_a_thread_free_for_pause_and_status(sock_path: Path) -> None:
    target = SlowLedger()
    with serving(target, sock_path, command_threads=3):
        slow = [connect(sock_path) for _ in range(6)]
        for sock in slow:
            sock.sendall(b'{"v":1,"cmd":"ledger"}\n')
        wait(lambda: target.in_ledger == 2, what="two ledger calls to start")
        client = ControlClient(sock_path, timeout=2.0)
        # Both answers come while the two ledger calls are still held.
        assert client.pause(5) == answer_for("pause", 5)
        assert client.status() == answer_for("status")
        assert target.in_ledger == 2  # the others wait their turn
        target.release.set()
        for sock in slow:
            answer = read_line(sock)
            assert answer is not None
            assert answer["ok"] is True
            sock.close()


def test_threads_do_not_grow_with_connections(sock_path: Path) -> None:
    target = FakeTarget()
    with serving(target, sock_path, max_connections=16, command_threads=4):
        before = len(control_threads())
        assert before == 1 + 4
        most = before
        for _ in range(300):
            sock = connect(sock_path)
            # A connection over the cap is answered "busy" and closed at once.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(STATUS)
            sock.close()  # without waiting for the answer
            most = max(most, len(control_threads()))
        held = [connect(sock_path) for _ in range(100)]
        most = max(most, len(control_threads()))
        for sock in held:
            sock.close()
        assert most == before
        assert ControlClient(sock_path).status() == answer_for("status")


# ------------------------------------------------------------ no descriptor left


@contextlib.contextmanager
def no_descriptors_left() -> Iterator[None]:
    """Lower this process's file limit just above what is open, and use up the rest."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, hard))
    hogs: list[int] = []
    try:
        with pytest.raises(OSError) as caught:  # noqa: PT012 - until none is left
            while True:
                hogs.append(os.open(os.devnull, os.O_RDONLY))
        assert caught.value.errno == errno.EMFILE
        yield
    finally:
        for fd in hogs:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_accept_survives_running_out_of_descriptors(
    sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = FakeTarget()
    with serving(target, sock_path) as server:
        # Made while descriptors are left; connecting needs none.
        waiting = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
        for sock in waiting:
            sock.settimeout(5.0)
        with no_descriptors_left():
            for sock in waiting:
                sock.connect(os.fspath(sock_path))
                with contextlib.suppress(BrokenPipeError):  # turned away already
                    sock.sendall(STATUS)
            # The server cannot accept them; it turns each away in words with
            # the descriptor it keeps in reserve, and keeps trying.
            answers = [read_line(sock) for sock in waiting]
        assert [a["error"] if a else None for a in answers] == ["busy"] * 3
        for sock in waiting:
            sock.close()
        assert server.open_connections() == 0
        # Descriptors are back: the same server answers again.
        assert ControlClient(sock_path).status() == answer_for("status")
    assert "cannot accept connections (EMFILE)" in caplog.text
    assert target.calls == [("status", ())]


# ------------------------------------------------------------ the real agent


def task_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def overt(sock: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "overt", *args, "--json", "--socket", str(sock)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"overt {' '.join(args)}: {done.stderr}"
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


class Flood:
    """Threads that connect to a socket as fast as they can, in three ways:
    connect and close, connect and send half a line, connect and ask status."""

    def __init__(self, path: Path, threads: int = 6) -> None:
        self.path = path
        self.stopping = threading.Event()
        self.connections = 0
        self.held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def __enter__(self) -> Flood:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(10)
        with self._lock:
            for sock in self.held:
                sock.close()
            self.held.clear()

    def _run(self, kind: int) -> None:
        while not self.stopping.is_set():
            try:
                sock = connect(self.path, timeout=2.0)
            except OSError:
                continue
            with self._lock:
                self.connections += 1
            try:
                if kind % 3 == 1:
                    sock.sendall(b'{"v":1,"cmd":"sta')
                    with self._lock:
                        if len(self.held) < 400:
                            self.held.append(sock)
                            continue
                elif kind % 3 == 2:
                    sock.sendall(STATUS)
                    read_line(sock)
            except OSError:
                pass
            sock.close()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_pause_answers_during_a_flood_at_a_low_file_limit_and_threads_come_back(
    tmp_path: Path,
) -> None:
    sock = tmp_path / "run" / "agent.sock"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.agent._control_child", str(tmp_path), str(sock), "64"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        assert ready[:1] == ["ready"], child.stderr.read() if child.stderr else ""
        assert int(ready[1]) == 16  # a quarter of 64 descriptors
        wait(lambda: overt(sock, "status")["reason"] == "capturing", what="capture")
        threads, fds = task_count(child.pid), fd_count(child.pid)
        written = overt(sock, "status")["counts"]["batches_written"]

        with Flood(sock) as flood:
            wait(lambda: flood.connections > 500, 30, "the flood to get going")
            paused = overt(sock, "pause", "5")
            assert paused["reason"] == "paused"
            assert paused["paused_until_ms"] is not None
            assert overt(sock, "status")["reason"] == "paused"
            assert task_count(child.pid) == threads
            resumed = overt(sock, "resume")
            assert resumed["reason"] == "capturing"
            # Capture goes on under the flood: new batches keep coming.
            wait(
                lambda: overt(sock, "status")["counts"]["batches_written"] > written + 1,
                20,
                "batches during the flood",
            )
            wait(lambda: flood.connections > 3000, 60, "a long flood")
            assert task_count(child.pid) == threads
            # The connections, one being let in, and files the agent has open
            # for a moment (writing sequence.json takes two).
            assert fd_count(child.pid) <= fds + 16 + 1 + 2
        assert flood.connections > 3000

        # After the flood: the same threads, its descriptors given back, still in charge.
        wait(lambda: fd_count(child.pid) <= fds, 10, "the flood's descriptors to be closed")
        assert task_count(child.pid) == threads
        status = overt(sock, "status")
        assert status["reason"] == "capturing"
        assert overt(sock, "pause")["reason"] == "paused"
        assert child.poll() is None
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == 0
