"""The control server: one loop thread serving every connection without blocking.

This module owns :class:`ControlServer`, which serves a
:class:`~agent.control.dispatch.ControlTarget` on the Unix socket of the
control API (``overt.wire.control`` is the format, ``agent.control.
socket_file`` the socket's place on disk, ``agent.control.dispatch`` what a
request line becomes). It does not decide what a command does.

What the server guarantees
--------------------------
- Nobody else can connect, and one server per path (``socket_file``): the
  socket is bound inside a 0700 directory of this user before it is set to
  0600, while a lock next to it is held.
- Every request is checked in full before the target sees it; a bad one is
  answered and the connection stays usable. A line over
  ``MAX_REQUEST_BYTES`` is answered with ``bad_request`` and the connection
  is closed (the rest of the line cannot be told from the next request).
- Resources are bounded whatever clients do: at most
  :data:`MAX_CONNECTIONS` connections are held open (a quarter of the file
  limit if that is fewer); one thread reads and writes all of them without
  blocking, and :data:`COMMAND_THREADS` threads carry out the requests, so
  the number of threads never grows with the connections. Each connection
  has a deadline per request line and per answer, so a slow, silent or
  hostile client never holds up another one.
- ``pause``, ``resume`` and ``status`` answer during a flood of
  connections: they are carried out ahead of other requests, one command
  thread runs nothing else, and a new connection at the limit takes the
  place of the connection that has waited longest for its client (which is
  answered ``busy`` and closed); only when every connection is busy with a
  command is the newcomer answered ``busy`` at once.
- A failed ``accept`` never stops the server: out of descriptors (EMFILE,
  ENFILE), it closes the longest-waiting connection and accepts again, or,
  with none to close, turns one waiting client away (``busy``) with a
  descriptor kept in reserve; otherwise it waits a little (doubling, capped)
  before accepting again. A connection aborted while it waited is skipped.
- ``stop()`` closes open connections, lets a command being carried out
  finish, stops the threads and removes the socket file (only if it is still
  the one this server bound).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import math
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.control.dispatch import (
    BUSY_LINE,
    CommandThreads,
    ControlTarget,
    encode_response,
    is_urgent,
)
from agent.control.errors import ControlSetupError
from agent.control.socket_file import (
    bound_identity,
    check_path_length,
    claim,
    prepare_directory,
    release_claim,
    remove_own_socket,
    remove_stale_socket,
)
from overt.wire.control import MAX_REQUEST_BYTES, ErrorCode, error_response

log = logging.getLogger(__name__)

#: Seconds a client has to send a complete request line (and to take an answer).
DEFAULT_LINE_TIMEOUT = 30.0
#: Connections the server holds open at once (fewer under a low file limit).
MAX_CONNECTIONS = 64
#: Threads that carry out commands; one of them is kept for pause, resume, status.
COMMAND_THREADS = 4

_BACKLOG = 128
_RECV_BYTES = 65536
#: Connections accepted per turn of the loop, so that reads are not starved.
_ACCEPTS_PER_ROUND = 16
#: Waits before accepting again after ``accept`` failed: doubling, capped.
_BACKOFF_MIN_S = 0.01
_BACKOFF_MAX_S = 1.0
#: At most one log line per this many seconds about turned-away connections.
_TURNED_AWAY_LOG_S = 10.0
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_LISTENER, _WAKE = object(), object()


class ControlServer:
    """Serves ``target`` on the Unix socket at ``path`` (see the module docstring).

    ``line_timeout`` is how long a client may take to send one complete
    request line (and to take one answer) before its connection is closed.
    ``max_connections`` caps the connections held open at once (lowered to
    a quarter of the file limit, ``RLIMIT_NOFILE``, when that is smaller) and
    ``command_threads`` the threads that carry out commands. One thread
    (``overt-control``) accepts connections and reads and writes all of them
    without blocking; the ``overt-control-cmd`` threads run the commands,
    ``pause``, ``resume`` and ``status`` ahead of the others, and one of them
    runs nothing else, so that those three answer while slower commands
    (the ledger, the collector) take the rest.
    """

    def __init__(
        self,
        target: ControlTarget,
        path: str | os.PathLike[str],
        *,
        line_timeout: float = DEFAULT_LINE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        command_threads: int = COMMAND_THREADS,
    ) -> None:
        if not line_timeout > 0:
            raise ValueError("line_timeout must be positive")
        if max_connections < 1 or command_threads < 2:
            raise ValueError("max_connections must be at least 1 and command_threads at least 2")
        self.target = target
        self.path = Path(path)
        self.line_timeout = line_timeout
        self._max_connections = max_connections
        self._command_threads = command_threads
        #: The cap in force, set by ``start`` from the file limit.
        self.connection_limit = max_connections
        self._listener: socket.socket | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._commands: CommandThreads[_Connection] | None = None
        self._lock_fd: int | None = None
        self._bound: tuple[int, int] | None = None
        self._mutex = threading.Lock()
        self._closing = False
        #: Answers the command threads finished, for the loop to send.
        self._answers: deque[tuple[_Connection, bytes]] = deque()
        # The rest belongs to the loop thread.
        self._selector: selectors.BaseSelector | None = None
        self._open: dict[socket.socket, _Connection] = {}
        self._listening = False
        self._accept_again_at = 0.0
        self._backoff = 0.0
        #: A descriptor held in reserve, given up to turn a client away
        #: when no descriptor is left to accept it with.
        self._spare_fd: int | None = None
        self._turned_away = 0
        self._turned_away_logged_at = -math.inf

    # -------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Prepare the directory, claim the path, bind, and serve in a thread.

        Raises :class:`AgentAlreadyRunning` when a live agent serves the path
        and :class:`ControlSetupError` when the path cannot be used safely.
        """
        if self._listener is not None:
            raise RuntimeError("the control server is already started")
        check_path_length(self.path)
        prepare_directory(self.path.parent)
        self._lock_fd = claim(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            remove_stale_socket(self.path)
            try:
                listener.bind(os.fspath(self.path))
                # The directory is 0700, so nobody else could reach the socket
                # in the moment before this chmod narrows it to 0600.
                os.chmod(self.path, 0o600)
                self._bound = bound_identity(self.path)
                listener.listen(_BACKLOG)
                listener.setblocking(False)
            except OSError as exc:
                self._remove_own_socket()
                raise ControlSetupError(
                    f"cannot listen at {self.path}: {exc.strerror or exc}"
                ) from exc
        except BaseException:
            listener.close()
            self._release_claim()
            raise
        self._listener = listener
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._closing = False
        self.connection_limit = _connection_limit(self._max_connections)
        self._spare_fd = _open_spare()
        self._commands = CommandThreads(self.target, self._command_threads, self._answered)
        self._thread = threading.Thread(
            target=self._loop,
            args=(listener, self._wake_reader),
            name="overt-control",
            daemon=True,
        )
        self._thread.start()
        log.info("control API listening (at most %d connections)", self.connection_limit)

    def stop(self) -> None:
        """Stop serving, close open connections and remove the socket file.

        A command being carried out finishes first; commands not started yet
        are dropped with their connections."""
        listener = self._listener
        if listener is None:
            return
        self._listener = None
        with self._mutex:
            self._closing = True
        self._wake()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        listener.close()
        if self._commands is not None:
            self._commands.stop()
            self._commands = None
        with self._mutex:
            for end in (self._wake_reader, self._wake_writer):
                if end is not None:
                    end.close()
            self._wake_reader = self._wake_writer = None
            self._answers.clear()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
        self._remove_own_socket()
        self._release_claim()
        log.info("control API stopped")

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def open_connections(self) -> int:
        """How many connections the server holds open now (for tests and status)."""
        return len(self._open)

    # -------------------------------------------------------- the loop

    def _loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            self._selector = selector
            selector.register(wake, selectors.EVENT_READ, _WAKE)
            selector.register(listener, selectors.EVENT_READ, _LISTENER)
            self._listening = True
            try:
                while True:
                    events = selector.select(self._select_timeout(time.monotonic()))
                    now = time.monotonic()
                    accept = False
                    for key, mask in events:
                        if key.data is _WAKE:
                            _drain(wake)
                        elif key.data is _LISTENER:
                            accept = True
                        else:
                            self._guarded(key.data, self._on_ready, mask, now)
                    if self._closing:
                        return
                    self._send_answers(now)
                    # After the reads: a client that already sent its line is
                    # not the longest-waiting one when a newcomer needs room.
                    if accept:
                        self._accept(listener, now)
                    self._expire(now)
                    if not self._listening and now >= self._accept_again_at:
                        selector.register(listener, selectors.EVENT_READ, _LISTENER)
                        self._listening = True
            finally:
                for conn in list(self._open.values()):
                    self._close(conn)
                self._selector = None

    def _select_timeout(self, now: float) -> float | None:
        deadlines = [c.deadline for c in self._open.values() if c.state is not _State.BUSY]
        if not self._listening:
            deadlines.append(self._accept_again_at)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _guarded(self, conn: _Connection, step: Callable[..., None], *args: Any) -> None:
        """Run one step for a connection; a failure ends that connection only."""
        try:
            step(conn, *args)
        except Exception as exc:
            log.error("control connection failed with %s", type(exc).__name__)
            self._close(conn)

    # -------------------------------------------------------- accepting

    def _accept(self, listener: socket.socket, now: float) -> None:
        for _ in range(_ACCEPTS_PER_ROUND):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                self._backoff = 0.0
                return
            except ConnectionAbortedError:
                continue  # the client gave up while it waited: nothing to do
            except OSError as exc:
                self._accept_failed(listener, exc, now)
                return
            self._backoff = 0.0
            if len(self._open) >= self.connection_limit and not self._evict(now):
                self._turn_away(sock, now)
                continue
            self._admit(sock, now)

    def _admit(self, sock: socket.socket, now: float) -> None:
        sock.setblocking(False)
        conn = _Connection(sock, now, now + self.line_timeout)
        self._open[sock] = conn
        assert self._selector is not None
        self._selector.register(sock, selectors.EVENT_READ, conn)

    def _evict(self, now: float) -> bool:
        """Close the connection that has waited longest for its client (to send a
        request, or to take an answer) to make room; False if every one is busy
        with a command."""
        waiting = [c for c in self._open.values() if c.state is not _State.BUSY]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.since)
        if oldest.state is _State.READING:
            _send_now(oldest.sock, BUSY_LINE)
        self._close(oldest)
        self._note_turned_away(now)
        return True

    def _turn_away(self, sock: socket.socket, now: float) -> None:
        """Answer a connection there is no room for with one ``busy`` line, and close it."""
        sock.setblocking(False)
        _send_now(sock, BUSY_LINE)
        _drain(sock)
        sock.close()
        self._note_turned_away(now)

    def _accept_failed(self, listener: socket.socket, exc: OSError, now: float) -> None:
        """Survive a failed ``accept``: make room if the descriptors ran out, else wait a little."""
        if exc.errno in _OUT_OF_DESCRIPTORS:
            if self._evict(now):
                return  # a descriptor is free again; the next round accepts
            if self._spare_fd is not None:
                # Give up the spare to take one waiting client off the queue,
                # and tell it, rather than leave it waiting for nothing.
                os.close(self._spare_fd)
                self._spare_fd = None
                with contextlib.suppress(OSError):
                    sock, _ = listener.accept()
                    self._turn_away(sock, now)
                self._spare_fd = _open_spare()
        self._backoff = min(max(self._backoff * 2, _BACKOFF_MIN_S), _BACKOFF_MAX_S)
        self._accept_again_at = now + self._backoff
        if self._listening and self._selector is not None:
            self._selector.unregister(listener)
            self._listening = False
        if self._backoff >= _BACKOFF_MAX_S or self._backoff == _BACKOFF_MIN_S:
            log.error(
                "control API cannot accept connections (%s); trying again in %.2f s",
                errno.errorcode.get(exc.errno or 0, type(exc).__name__),
                self._backoff,
            )

    def _note_turned_away(self, now: float) -> None:
        self._turned_away += 1
        if now - self._turned_away_logged_at >= _TURNED_AWAY_LOG_S:
            log.warning(
                "control API at its limit of %d connections: %d turned away",
                self.connection_limit,
                self._turned_away,
            )
            self._turned_away_logged_at = now
            self._turned_away = 0

    # -------------------------------------------------------- reading and writing

    def _on_ready(self, conn: _Connection, mask: int, now: float) -> None:
        if conn.state is _State.READING and mask & selectors.EVENT_READ:
            try:
                chunk = conn.sock.recv(_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
            if not chunk:
                if conn.inbox:
                    log.debug("control connection closed in the middle of a line")
                self._close(conn)
                return
            conn.inbox += chunk
            self._take_request(conn, now)
        elif conn.state is _State.WRITING and mask & selectors.EVENT_WRITE:
            self._write(conn, now)

    def _take_request(self, conn: _Connection, now: float) -> None:
        """Hand a complete request line to the command threads, if one has arrived."""
        newline = conn.inbox.find(b"\n")
        if newline < 0:
            if len(conn.inbox) > MAX_REQUEST_BYTES:
                self._refuse_long_line(conn, now)
            return
        if newline > MAX_REQUEST_BYTES:
            self._refuse_long_line(conn, now)
            return
        line = bytes(conn.inbox[:newline])
        del conn.inbox[: newline + 1]
        conn.state = _State.BUSY
        assert self._selector is not None
        self._selector.unregister(conn.sock)
        assert self._commands is not None
        self._commands.submit(conn, line, urgent=is_urgent(line))

    def _refuse_long_line(self, conn: _Connection, now: float) -> None:
        message = f"the request is longer than {MAX_REQUEST_BYTES} bytes"
        conn.inbox.clear()
        conn.close_after = True
        answer = encode_response(error_response(ErrorCode.BAD_REQUEST, message))
        self._start_writing(conn, answer, now)

    def _answered(self, conn: _Connection, answer: bytes) -> None:
        """Called by a command thread: ``answer`` is ready for ``conn``."""
        with self._mutex:
            if self._closing:
                return
            self._answers.append((conn, answer))
        self._wake()

    def _send_answers(self, now: float) -> None:
        while True:
            with self._mutex:
                if not self._answers:
                    return
                conn, answer = self._answers.popleft()
            if self._open.get(conn.sock) is conn:
                self._guarded(conn, self._start_writing, answer, now)

    def _start_writing(self, conn: _Connection, data: bytes, now: float) -> None:
        assert self._selector is not None
        if conn.state is _State.BUSY:
            self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
        else:
            self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        conn.state = _State.WRITING
        conn.outbox = memoryview(data)
        conn.since, conn.deadline = now, now + self.line_timeout
        self._write(conn, now)

    def _write(self, conn: _Connection, now: float) -> None:
        try:
            sent = conn.sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.outbox = conn.outbox[sent:]
        if conn.outbox:
            return
        if conn.close_after:
            self._close(conn)
            return
        # Ready for the next request, which may be here already.
        conn.state = _State.READING
        conn.since, conn.deadline = now, now + self.line_timeout
        assert self._selector is not None
        self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
        self._take_request(conn, now)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._open.values() if c.state is not _State.BUSY]:
            if now >= conn.deadline:
                what = "a complete request" if conn.state is _State.READING else "its answer taken"
                log.debug("control connection closed: %s not in time", what)
                self._close(conn)

    def _close(self, conn: _Connection) -> None:
        if self._open.pop(conn.sock, None) is None:
            return
        if conn.state is not _State.BUSY and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        conn.state = _State.CLOSED
        conn.sock.close()

    def _wake(self) -> None:
        writer = self._wake_writer
        if writer is not None:
            with contextlib.suppress(OSError):  # full: the loop is awake already
                writer.send(b"x")

    def _remove_own_socket(self) -> None:
        bound, self._bound = self._bound, None
        remove_own_socket(self.path, bound)

    def _release_claim(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            release_claim(fd)


class _State(enum.Enum):
    READING = "reading"  # waiting for the client's next request line
    BUSY = "busy"  # a command thread has (or will have) its request
    WRITING = "writing"  # sending the answer
    CLOSED = "closed"


class _Connection:
    """One client connection, as the loop thread sees it."""

    __slots__ = ("close_after", "deadline", "inbox", "outbox", "since", "sock", "state")

    def __init__(self, sock: socket.socket, now: float, deadline: float) -> None:
        self.sock = sock
        self.state = _State.READING
        self.inbox = bytearray()
        self.outbox = memoryview(b"")
        #: When the connection began waiting for its client (the eviction order).
        self.since = now
        self.deadline = deadline
        self.close_after = False


def _connection_limit(requested: int) -> int:
    """``requested``, or a quarter of the soft file limit if that is smaller
    (at least 4): the connections must leave descriptors for the rest of the agent."""
    try:
        import resource  # Unix only, like the socket itself
    except ImportError:  # pragma: no cover
        return requested
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested
    return min(requested, max(4, soft // 4))


def _open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None


def _send_now(sock: socket.socket, data: bytes) -> None:
    """Send what fits without waiting (a short line fits an empty socket buffer)."""
    with contextlib.suppress(OSError):
        sock.send(data)


def _drain(sock: socket.socket) -> None:
    """Read what is waiting on a non-blocking socket, and forget it."""
    with contextlib.suppress(OSError):
        for _ in range(16):
            if not sock.recv(_RECV_BYTES):
                return
