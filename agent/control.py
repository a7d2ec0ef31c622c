"""The agent's local control API: wire format, server and client (version 1).

This module owns the one way into a running agent for the tray and the CLI
(``docs/CONTROL.md`` is its specification): a Unix domain socket in the
user's runtime directory carrying JSON lines, the :class:`ControlServer` that
serves it on behalf of a :class:`ControlTarget`, and the
:class:`ControlClient` that the tray and ``overt status|pause|…`` use.

It does not own what a command *does*: the target decides (the adapter to
the real agent is ``agent.control_target``). It imports only the standard
library and ``policies``, never Qt and nothing of the agent that could load
a capture backend, because the tray imports it.

What the server guarantees
--------------------------
- The socket's directory is owned by this user with mode 0700 (created so,
  or tightened; another user's directory is refused), and the socket is bound
  inside it before being set to 0600, so no other user can connect at any
  moment.
- At most one server per socket path: a lock file next to the socket is held
  while serving, and a socket that answers a connection is left alone
  (:class:`AgentAlreadyRunning`); a socket file nobody listens on is a
  leftover of a crash and is replaced.
- Every request is checked (shape, version, command, argument names, types
  and ranges) before the target sees it; a bad one gets a ``bad_request`` or
  ``unknown_command`` answer and the connection stays usable. A line over
  :data:`MAX_REQUEST_BYTES` is answered with ``bad_request`` and the
  connection is closed (the rest of the line cannot be told from the next
  request).
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
  command is the newcomer answered ``busy`` at once. The client asks a busy
  agent again until its timeout.
- A failed ``accept`` never stops the server: out of descriptors (EMFILE,
  ENFILE), it closes the longest-waiting connection and accepts again, or,
  with none to close, turns one waiting client away (``busy``) with a
  descriptor kept in reserve; otherwise it waits a little (10 ms, doubling
  to 1 s) before accepting again. A connection aborted while it waited is
  skipped.
- An exception inside the target other than :class:`ControlError` becomes an
  ``internal`` answer; the client never sees a traceback, and the log records
  the command and the exception's type only (never arguments or content).
- ``stop()`` closes open connections, lets a command being carried out
  finish, stops the threads and removes the socket file (only if it is still
  the one this server bound).

Exceptions (one tree, every foreign exception wrapped at the boundary)::

    ControlError(code, message)     refusals from the agent carry a wire code:
    │                               bad_request, unknown_command, not_allowed,
    │                               unavailable, internal, busy
    ├── AgentNotRunning             no socket, or nothing listening on it
    ├── AgentAlreadyRunning         ControlServer.start: a live agent serves there
    ├── ControlSetupError           ControlServer.start: the directory or the
    │                               path cannot be used safely
    └── ControlProtocolError        the peer broke the protocol, timed out or
                                    hung up without an answer
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import logging
import math
import os
import re
import selectors
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from policies.model import Category

log = logging.getLogger(__name__)

#: The wire format's version, sent as ``"v"`` in every request.
PROTOCOL_VERSION = 1
#: The longest request line the server reads, without its newline.
MAX_REQUEST_BYTES = 64 * 1024
#: The longest response line the client reads, without its newline. Larger
#: than requests because a week's ledger holds thousands of batches.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: Seconds a client has to send a complete request line.
DEFAULT_LINE_TIMEOUT = 30.0
#: Seconds the client waits for the agent to answer.
DEFAULT_CLIENT_TIMEOUT = 5.0
#: The client's first wait before asking a busy agent again (it doubles).
_BUSY_RETRY_S = 0.02

#: Argument ranges the server enforces before calling the target.
MAX_PAUSE_MINUTES = 1_000_000  # longer than the policy allows is clamped by the agent
MAX_DISCARD_MINUTES = 366 * 24 * 60
MAX_LEDGER_DAYS = 366
#: The collector's limit (``collector.schemas``): a longer request would be refused there.
MAX_EXEMPTION_DAYS = 365
MAX_REASON_CHARS = 2000
DEFAULT_LEDGER_DAYS = 7

#: Connections the server holds open at once (fewer under a low file limit).
MAX_CONNECTIONS = 64
#: Threads that carry out commands; one of them is kept for pause, resume, status.
COMMAND_THREADS = 4

#: The codes an error answer may carry on the wire.
WIRE_ERROR_CODES = frozenset(
    {"bad_request", "unknown_command", "not_allowed", "unavailable", "internal", "busy"}
)

#: ``sockaddr_un.sun_path`` holds 108 bytes on Linux, 104 on macOS, NUL included.
_MAX_SOCKET_PATH_BYTES = 103

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
#: Requests carried out ahead of the others. Only an order: the request is
#: checked in full like any other.
_URGENT = re.compile(rb'"cmd"\s*:\s*"(?:pause|resume|status)"')
_LISTENER, _WAKE = object(), object()

JSONObject = dict[str, Any]


# --------------------------------------------------------------------- errors


class ControlError(Exception):
    """A command was refused, or the control channel failed; ``code`` says how."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class AgentNotRunning(ControlError):
    """Nobody serves the control socket: it is missing or refuses connections."""

    def __init__(self, path: str | os.PathLike[str], why: str) -> None:
        super().__init__("not_running", f"the agent is not running ({why} at {os.fspath(path)})")
        self.path = Path(path)
        #: "no socket" or "nothing listening", for messages.
        self.why = why


class AgentAlreadyRunning(ControlError):
    """Another live agent already serves this socket path."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(
            "already_running", f"another agent is already listening at {os.fspath(path)}"
        )
        self.path = Path(path)


class ControlSetupError(ControlError):
    """The socket's directory or path cannot be used safely."""

    def __init__(self, message: str) -> None:
        super().__init__("setup", message)


class ControlProtocolError(ControlError):
    """The other side broke the wire format, timed out or hung up."""

    def __init__(self, message: str, code: str = "protocol") -> None:
        super().__init__(code, message)


# ----------------------------------------------------------------- the target


class ControlTarget(Protocol):
    """What the control API drives: one method per command.

    Arguments arrive already validated (types and ranges of
    ``docs/CONTROL.md``). Each method returns the command's JSON object and
    raises :class:`ControlError` with a wire code (``not_allowed``,
    ``unavailable``, ``bad_request``) to refuse.
    """

    def status(self) -> JSONObject: ...

    def pause(self, minutes: int | None) -> JSONObject: ...

    def resume(self) -> JSONObject: ...

    def discard(self, minutes: int) -> JSONObject: ...

    def consent_show(self) -> JSONObject: ...

    def consent_accept(self, policy_version: int) -> JSONObject: ...

    def consent_decline(self, policy_version: int) -> JSONObject: ...

    def exemption_request(self, category: str, reason: str, duration_days: int) -> JSONObject: ...

    def exemption_list(self) -> JSONObject: ...

    def ledger(self, days: int) -> JSONObject: ...


# ----------------------------------------------------------------- wire format


def default_socket_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR/overt/agent.sock``, else ``/tmp/overt-$UID/agent.sock``.

    A relative ``XDG_RUNTIME_DIR`` is ignored, as the XDG specification says.
    """
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "overt" / "agent.sock"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path("/tmp") / f"overt-{uid}" / "agent.sock"  # noqa: S108 - checked to be ours, 0700


def encode_request(cmd: str, args: Mapping[str, Any] | None = None) -> bytes:
    """One request line, newline included."""
    body = {"v": PROTOCOL_VERSION, "cmd": cmd, "args": dict(args or {})}
    return _dumps(body) + b"\n"


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _loads(line: bytes) -> object:
    """Parse one JSON line strictly (no NaN or Infinity); ValueError if it is not JSON."""
    try:
        return json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


def _error(code: str, message: str) -> JSONObject:
    return {"ok": False, "error": code, "message": message}


# --------------------------------------------------------- request validation


class _BadRequest(Exception):
    pass


def _check_names(cmd: str, args: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise _BadRequest(f"{cmd}: unknown argument {unknown[0]!r}")


def _int_arg(args: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = args[name]
    # bool is an int in Python but not a count on the wire.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _BadRequest(f"{name} must be a whole number")
    if not low <= value <= high:
        raise _BadRequest(f"{name} must be between {low} and {high}, not {value}")
    return value


def _required_int(cmd: str, args: Mapping[str, Any], name: str, low: int, high: int) -> int:
    if name not in args:
        raise _BadRequest(f"{cmd} needs {name}")
    return _int_arg(args, name, low, high)


def _optional_int(args: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    if args.get(name) is None:
        return None
    return _int_arg(args, name, low, high)


def _no_args(cmd: str, call: Callable[[ControlTarget], JSONObject]) -> _Command:
    def run(target: ControlTarget, args: Mapping[str, Any]) -> JSONObject:
        _check_names(cmd, args, frozenset())
        return call(target)

    return run


def _pause(target: ControlTarget, args: Mapping[str, Any]) -> JSONObject:
    _check_names("pause", args, frozenset({"minutes"}))
    return target.pause(_optional_int(args, "minutes", 1, MAX_PAUSE_MINUTES))


def _discard(target: ControlTarget, args: Mapping[str, Any]) -> JSONObject:
    _check_names("discard", args, frozenset({"minutes"}))
    return target.discard(_required_int("discard", args, "minutes", 1, MAX_DISCARD_MINUTES))


def _consent_answer(accept: bool) -> _Command:
    cmd = "consent.accept" if accept else "consent.decline"

    def run(target: ControlTarget, args: Mapping[str, Any]) -> JSONObject:
        _check_names(cmd, args, frozenset({"policy_version"}))
        version = _required_int(cmd, args, "policy_version", 1, 2**63 - 1)
        return target.consent_accept(version) if accept else target.consent_decline(version)

    return run


_CATEGORIES = tuple(c.value for c in Category)


def _exemption_request(target: ControlTarget, args: Mapping[str, Any]) -> JSONObject:
    cmd = "exemption.request"
    _check_names(cmd, args, frozenset({"category", "reason", "duration_days"}))
    category, reason = args.get("category"), args.get("reason")
    if category not in _CATEGORIES:
        raise _BadRequest(f"category must be one of {', '.join(_CATEGORIES)}")
    if not isinstance(reason, str) or not reason.strip():
        raise _BadRequest("reason must be a non-empty text")
    if len(reason) > MAX_REASON_CHARS:
        raise _BadRequest(f"reason must be at most {MAX_REASON_CHARS} characters")
    given = args.get("duration_days")
    if type(given) is int and given > MAX_EXEMPTION_DAYS:
        raise _BadRequest(exemption_too_long(given))
    days = _required_int(cmd, args, "duration_days", 1, MAX_EXEMPTION_DAYS)
    return target.exemption_request(str(category), reason.strip(), days)


def exemption_too_long(days: int) -> str:
    """The refusal of an exemption request longer than the collector accepts."""
    return (
        f"an exemption can last at most {MAX_EXEMPTION_DAYS} days, not {days}; "
        "ask for a shorter one (and again when it ends)"
    )


def _ledger(target: ControlTarget, args: Mapping[str, Any]) -> JSONObject:
    _check_names("ledger", args, frozenset({"days"}))
    days = _optional_int(args, "days", 1, MAX_LEDGER_DAYS)
    return target.ledger(DEFAULT_LEDGER_DAYS if days is None else days)


_Command = Callable[[ControlTarget, Mapping[str, Any]], JSONObject]

#: command name -> validating caller; the single list of what the server accepts.
COMMANDS: dict[str, _Command] = {
    "status": _no_args("status", lambda t: t.status()),
    "pause": _pause,
    "resume": _no_args("resume", lambda t: t.resume()),
    "discard": _discard,
    "consent.show": _no_args("consent.show", lambda t: t.consent_show()),
    "consent.accept": _consent_answer(accept=True),
    "consent.decline": _consent_answer(accept=False),
    "exemption.request": _exemption_request,
    "exemption.list": _no_args("exemption.list", lambda t: t.exemption_list()),
    "ledger": _ledger,
}


def handle_request(target: ControlTarget, line: bytes) -> JSONObject:
    """Answer one request line (without its newline) with a response object.

    Never raises: every failure becomes an error answer.
    """
    try:
        request = _loads(line)
    except ValueError:
        return _error("bad_request", "the request is not a UTF-8 JSON object")
    if not isinstance(request, dict):
        return _error("bad_request", "the request is not a JSON object")
    extra = sorted(set(request) - {"v", "cmd", "args"})
    if extra:
        return _error("bad_request", f"unknown request field {extra[0]!r}")
    version = request.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        return _error(
            "bad_request", f"unsupported protocol version (this agent speaks v{PROTOCOL_VERSION})"
        )
    cmd, args = request.get("cmd"), request.get("args", {})
    if not isinstance(cmd, str):
        return _error("bad_request", "cmd must be a command name")
    command = COMMANDS.get(cmd)
    if command is None:
        return _error("unknown_command", f"unknown command {cmd[:64]!r}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return _error("bad_request", "args must be a JSON object")
    try:
        result = command(target, args)
    except _BadRequest as exc:
        return _error("bad_request", str(exc))
    except ControlError as exc:
        code = exc.code if exc.code in WIRE_ERROR_CODES else "internal"
        return _error(code, exc.message)
    except Exception as exc:
        # The type only: an exception's text may quote captured content.
        log.error("control command %s failed with %s", cmd, type(exc).__name__)
        return _error("internal", f"the agent could not carry out {cmd}; its log says why")
    if not isinstance(result, dict):
        log.error("control command %s returned %s, not an object", cmd, type(result).__name__)
        return _error("internal", f"the agent gave no answer to {cmd}")
    return {"ok": True, "result": result}


def encode_response(response: JSONObject) -> bytes:
    """One response line, newline included; an unencodable or oversized
    result becomes an ``internal`` error answer."""
    try:
        body = _dumps(response)
    except (TypeError, ValueError) as exc:
        log.error("control answer cannot be encoded: %s", type(exc).__name__)
        body = _dumps(_error("internal", "the agent's answer could not be encoded"))
    if len(body) > MAX_RESPONSE_BYTES:
        log.error("control answer of %d bytes is over the limit", len(body))
        body = _dumps(_error("internal", "the agent's answer is too large to send"))
    return body + b"\n"


# ---------------------------------------------------------------- line reader


class _LineTooLong(Exception):
    pass


class _LineReader:
    """Reads newline-terminated lines from a socket, each within ``limit``
    bytes and before a deadline. Returns None at a clean end of stream."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self._sock = sock
        self._limit = limit
        self._buffer = bytearray()

    def read_line(self, timeout: float) -> bytes | None:
        """One line without its newline. Raises TimeoutError, _LineTooLong,
        or OSError (connection reset); None when the peer closed cleanly."""
        deadline = time.monotonic() + timeout
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                if newline > self._limit:
                    raise _LineTooLong
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            if len(self._buffer) > self._limit:
                raise _LineTooLong
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._sock.settimeout(remaining)
            chunk = self._sock.recv(65536)
            if not chunk:
                if self._buffer:
                    raise ConnectionResetError("the peer hung up in the middle of a line")
                return None
            self._buffer += chunk


# --------------------------------------------------------------------- server

#: The answer to a connection there is no room for (sent before its request is read).
_BUSY_LINE = encode_response(
    _error(
        "busy",
        "The agent is answering too many control connections; nothing was done. Try again.",
    )
)


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
        self._commands: _CommandThreads | None = None
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
        _check_path_length(self.path)
        _prepare_directory(self.path.parent)
        self._lock_fd = _claim(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _remove_stale_socket(self.path)
            try:
                listener.bind(os.fspath(self.path))
                # The directory is 0700, so nobody else could reach the socket
                # in the moment before this chmod narrows it to 0600.
                os.chmod(self.path, 0o600)
                info = os.lstat(self.path)
                self._bound = (info.st_dev, info.st_ino)
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
        self._commands = _CommandThreads(self.target, self._command_threads, self._answered)
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
            _send_now(oldest.sock, _BUSY_LINE)
        self._close(oldest)
        self._note_turned_away(now)
        return True

    def _turn_away(self, sock: socket.socket, now: float) -> None:
        """Answer a connection there is no room for with one ``busy`` line, and close it."""
        sock.setblocking(False)
        _send_now(sock, _BUSY_LINE)
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
        self._commands.submit(conn, line, urgent=_URGENT.search(line) is not None)

    def _refuse_long_line(self, conn: _Connection, now: float) -> None:
        message = f"the request is longer than {MAX_REQUEST_BYTES} bytes"
        conn.inbox.clear()
        conn.close_after = True
        self._start_writing(conn, encode_response(_error("bad_request", message)), now)

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
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if bound is not None and (info.st_dev, info.st_ino) == bound:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _release_claim(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


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


class _CommandThreads:
    """A fixed set of threads that carry out requests, urgent ones first.

    At most ``threads - 1`` of them run a request that is not urgent at one
    time, so one is always free for ``pause``, ``resume`` and ``status``.
    """

    def __init__(
        self,
        target: ControlTarget,
        threads: int,
        done: Callable[[_Connection, bytes], None],
    ) -> None:
        self._target = target
        self._done = done
        self._cond = threading.Condition()
        self._urgent: deque[tuple[_Connection, bytes]] = deque()
        self._other: deque[tuple[_Connection, bytes]] = deque()
        self._other_limit = threads - 1
        self._other_running = 0
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, name="overt-control-cmd", daemon=True)
            for _ in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, conn: _Connection, line: bytes, *, urgent: bool) -> None:
        with self._cond:
            (self._urgent if urgent else self._other).append((conn, line))
            self._cond.notify()

    def stop(self) -> None:
        """Drop what has not started; wait for what has (a slow target call finishes)."""
        with self._cond:
            self._stopping = True
            self._urgent.clear()
            self._other.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _next(self) -> tuple[_Connection, bytes, bool] | None:
        with self._cond:
            while True:
                if self._stopping:
                    return None
                if self._urgent:
                    conn, line = self._urgent.popleft()
                    return conn, line, True
                if self._other and self._other_running < self._other_limit:
                    conn, line = self._other.popleft()
                    self._other_running += 1
                    return conn, line, False
                self._cond.wait()

    def _run(self) -> None:
        while (job := self._next()) is not None:
            conn, line, urgent = job
            try:
                answer = encode_response(handle_request(self._target, line))
            except Exception as exc:  # handle_request answers every failure; this is a bug
                log.error("control request failed with %s", type(exc).__name__)
                answer = encode_response(_error("internal", "the agent could not answer"))
            finally:
                if not urgent:
                    with self._cond:
                        self._other_running -= 1
                        self._cond.notify()
            self._done(conn, answer)


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


def _check_path_length(path: Path) -> None:
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH_BYTES:
        raise ControlSetupError(
            f"the socket path {path} is too long for a Unix socket "
            f"(at most {_MAX_SOCKET_PATH_BYTES} bytes)"
        )


def _prepare_directory(directory: Path) -> None:
    """Create ``directory`` 0700, or check that it is this user's and make it 0700."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise ControlSetupError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ControlSetupError(f"{directory} is not a directory")
    if info.st_uid != os.getuid():
        raise ControlSetupError(f"{directory} belongs to another user; refusing to use it")
    if stat.S_IMODE(info.st_mode) != 0o700:
        try:
            os.chmod(directory, 0o700)
        except OSError as exc:
            raise ControlSetupError(f"cannot restrict {directory}: {exc.strerror}") from exc


def _claim(path: Path) -> int:
    """Hold an exclusive lock for ``path`` while serving; the descriptor is the claim."""
    import fcntl  # Unix only, like the socket itself

    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ControlSetupError(f"cannot open {lock_path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise AgentAlreadyRunning(path) from exc
        raise ControlSetupError(f"cannot lock {lock_path}: {exc.strerror or exc}") from exc
    return fd


def _remove_stale_socket(path: Path) -> None:
    """Leave a live socket alone (raise), remove a dead one, refuse anything else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ControlSetupError(f"cannot inspect {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSetupError(f"{path} exists and is not a socket; remove it first")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing a stale control socket")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as exc:
        raise ControlSetupError(f"cannot check {path}: {exc.strerror or exc}") from exc
    finally:
        probe.close()
    raise AgentAlreadyRunning(path)


# --------------------------------------------------------------------- client


class ControlClient:
    """Talks to the agent at ``path``; one connection per call.

    Every method returns the command's result object, or raises
    :class:`AgentNotRunning`, :class:`ControlError` (a refusal, with the
    agent's code and words) or :class:`ControlProtocolError`.
    """

    def __init__(
        self, path: str | os.PathLike[str], timeout: float = DEFAULT_CLIENT_TIMEOUT
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.path = Path(path)
        self.timeout = timeout

    def status(self) -> JSONObject:
        return self.call("status")

    def pause(self, minutes: int | None = None) -> JSONObject:
        return self.call("pause", {} if minutes is None else {"minutes": minutes})

    def resume(self) -> JSONObject:
        return self.call("resume")

    def discard(self, minutes: int) -> JSONObject:
        return self.call("discard", {"minutes": minutes})

    def consent_show(self) -> JSONObject:
        return self.call("consent.show")

    def consent_accept(self, policy_version: int) -> JSONObject:
        return self.call("consent.accept", {"policy_version": policy_version})

    def consent_decline(self, policy_version: int) -> JSONObject:
        return self.call("consent.decline", {"policy_version": policy_version})

    def exemption_request(self, category: str, reason: str, duration_days: int) -> JSONObject:
        return self.call(
            "exemption.request",
            {"category": category, "reason": reason, "duration_days": duration_days},
        )

    def exemption_list(self) -> JSONObject:
        return self.call("exemption.list")

    def ledger(self, days: int = DEFAULT_LEDGER_DAYS) -> JSONObject:
        return self.call("ledger", {"days": days})

    def call(self, cmd: str, args: Mapping[str, Any] | None = None) -> JSONObject:
        """Send one request and return its result (the raw form of every method).

        An agent too busy to take the connection (``busy``: the request was
        not read, so nothing was done) is asked again, after a short and
        growing wait, until the timeout runs out."""
        request = encode_request(cmd, args)
        if len(request) - 1 > MAX_REQUEST_BYTES:
            raise ControlError("bad_request", f"the request is longer than {MAX_REQUEST_BYTES}")
        deadline = time.monotonic() + self.timeout
        wait = _BUSY_RETRY_S
        while True:
            try:
                return self._answer(self._exchange(request, deadline))
            except ControlError as exc:
                if exc.code != "busy" or time.monotonic() + wait >= deadline:
                    raise
            time.sleep(wait)
            wait = min(wait * 2, 0.5)

    @staticmethod
    def _answer(line: bytes) -> JSONObject:
        try:
            response = _loads(line)
        except ValueError as exc:
            raise ControlProtocolError("the agent's answer is not JSON") from exc
        if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
            raise ControlProtocolError("the agent's answer is not a control response")
        if response["ok"]:
            result = response.get("result")
            if not isinstance(result, dict):
                raise ControlProtocolError("the agent's answer carries no result")
            return result
        code, message = response.get("error"), response.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise ControlProtocolError("the agent's error answer is malformed")
        raise ControlError(code, message)

    def _connect(self, sock: socket.socket, deadline: float) -> None:
        wait = 0.005
        while True:
            try:
                sock.connect(os.fspath(self.path))
                return
            except BlockingIOError as exc:
                # A Unix socket whose queue of connections waiting to be
                # accepted is full refuses at once (EAGAIN) instead of waiting:
                # the agent is busy, so ask again until the deadline.
                if time.monotonic() + wait >= deadline:
                    raise TimeoutError from exc
                time.sleep(wait)
                wait = min(wait * 2, 0.1)

    def _exchange(self, request: bytes, deadline: float) -> bytes:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                self._connect(sock, deadline)
            except FileNotFoundError as exc:
                raise AgentNotRunning(self.path, "no socket") from exc
            except ConnectionRefusedError as exc:
                raise AgentNotRunning(self.path, "nothing listening") from exc
            except PermissionError as exc:
                raise ControlError(
                    "permission", f"not allowed to connect to {self.path}: it is not yours"
                ) from exc
            except TimeoutError as exc:
                raise ControlProtocolError(
                    f"the agent at {self.path} does not accept connections", code="timeout"
                ) from exc
            except OSError as exc:
                raise ControlProtocolError(
                    f"cannot connect to {self.path}: {exc.strerror or exc}"
                ) from exc
            try:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    # An agent that turned the connection away has answered
                    # (busy) and closed it: its answer is still there to read.
                    sock.sendall(request)
                line = _LineReader(sock, MAX_RESPONSE_BYTES).read_line(
                    max(deadline - time.monotonic(), 0.001)
                )
            except TimeoutError as exc:
                raise ControlProtocolError(
                    f"the agent did not answer within {self.timeout:g} s", code="timeout"
                ) from exc
            except _LineTooLong as exc:
                raise ControlProtocolError("the agent's answer is too large") from exc
            except OSError as exc:
                raise ControlProtocolError(
                    "the agent closed the connection without an answer"
                ) from exc
            if line is None:
                raise ControlProtocolError("the agent closed the connection without an answer")
            return line
        finally:
            sock.close()
