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
- Each connection has its own thread and a deadline per request line, so a
  slow, silent or hostile client never holds up another one.
- An exception inside the target other than :class:`ControlError` becomes an
  ``internal`` answer; the client never sees a traceback, and the log records
  the command and the exception's type only (never arguments or content).
- ``stop()`` closes open connections, waits for their threads and removes the
  socket file (only if it is still the one this server bound).

Exceptions (one tree, every foreign exception wrapped at the boundary)::

    ControlError(code, message)     refusals from the agent carry a wire code:
    │                               bad_request, unknown_command, not_allowed,
    │                               unavailable, internal
    ├── AgentNotRunning             no socket, or nothing listening on it
    ├── AgentAlreadyRunning         ControlServer.start: a live agent serves there
    ├── ControlSetupError           ControlServer.start: the directory or the
    │                               path cannot be used safely
    └── ControlProtocolError        the peer broke the protocol, timed out or
                                    hung up without an answer
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import selectors
import socket
import stat
import threading
import time
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

#: Argument ranges the server enforces before calling the target.
MAX_PAUSE_MINUTES = 1_000_000  # longer than the policy allows is clamped by the agent
MAX_DISCARD_MINUTES = 366 * 24 * 60
MAX_LEDGER_DAYS = 366
MAX_EXEMPTION_DAYS = 366
MAX_REASON_CHARS = 2000
DEFAULT_LEDGER_DAYS = 7

#: The codes an error answer may carry on the wire.
WIRE_ERROR_CODES = frozenset(
    {"bad_request", "unknown_command", "not_allowed", "unavailable", "internal"}
)

#: ``sockaddr_un.sun_path`` holds 108 bytes on Linux, 104 on macOS, NUL included.
_MAX_SOCKET_PATH_BYTES = 103

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
    days = _required_int(cmd, args, "duration_days", 1, MAX_EXEMPTION_DAYS)
    return target.exemption_request(str(category), reason.strip(), days)


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


class ControlServer:
    """Serves ``target`` on the Unix socket at ``path`` (see the module docstring).

    ``line_timeout`` is how long a client may take to send one complete
    request line (and to take one answer) before its connection is closed.
    One thread (``overt-control``) accepts connections and wakes only for
    them; each connection gets its own thread (``overt-control-conn``).
    """

    def __init__(
        self,
        target: ControlTarget,
        path: str | os.PathLike[str],
        *,
        line_timeout: float = DEFAULT_LINE_TIMEOUT,
    ) -> None:
        if not line_timeout > 0:
            raise ValueError("line_timeout must be positive")
        self.target = target
        self.path = Path(path)
        self.line_timeout = line_timeout
        self._listener: socket.socket | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._bound: tuple[int, int] | None = None
        self._mutex = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._closing = False

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
                listener.listen(16)
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
        self._closing = False
        self._thread = threading.Thread(
            target=self._accept_loop,
            args=(listener, self._wake_reader),
            name="overt-control",
            daemon=True,
        )
        self._thread.start()
        log.info("control API listening")

    def stop(self) -> None:
        """Stop serving, close open connections and remove the socket file."""
        listener = self._listener
        if listener is None:
            return
        self._listener = None
        with self._mutex:
            self._closing = True
            connections = list(self._connections.items())
        if self._wake_writer is not None:
            self._wake_writer.send(b"x")
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        listener.close()
        for sock, _ in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            # A handler inside a slow target call finishes that call first.
            thread.join()
        for end in (self._wake_reader, self._wake_writer):
            if end is not None:
                end.close()
        self._wake_reader = self._wake_writer = None
        self._remove_own_socket()
        self._release_claim()
        log.info("control API stopped")

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -------------------------------------------------------- internals

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if wake in ready:
                    return
                try:
                    sock, _ = listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as exc:
                    log.error("control API cannot accept connections: %s", type(exc).__name__)
                    return
                thread = threading.Thread(
                    target=self._serve_connection,
                    args=(sock,),
                    name="overt-control-conn",
                    daemon=True,
                )
                with self._mutex:
                    if self._closing:
                        sock.close()
                        return
                    self._connections[sock] = thread
                thread.start()

    def _serve_connection(self, sock: socket.socket) -> None:
        reader = _LineReader(sock, MAX_REQUEST_BYTES)
        try:
            while True:
                try:
                    line = reader.read_line(self.line_timeout)
                except _LineTooLong:
                    message = f"the request is longer than {MAX_REQUEST_BYTES} bytes"
                    self._send(sock, encode_response(_error("bad_request", message)))
                    return
                except TimeoutError:
                    log.debug("control connection closed: no complete request in time")
                    return
                if line is None:
                    return
                self._send(sock, encode_response(handle_request(self.target, line)))
        except OSError as exc:
            log.debug("control connection ended: %s", type(exc).__name__)
        finally:
            with self._mutex:
                self._connections.pop(sock, None)
            sock.close()

    def _send(self, sock: socket.socket, data: bytes) -> None:
        sock.settimeout(self.line_timeout)
        sock.sendall(data)

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
        """Send one request and return its result (the raw form of every method)."""
        request = encode_request(cmd, args)
        if len(request) - 1 > MAX_REQUEST_BYTES:
            raise ControlError("bad_request", f"the request is longer than {MAX_REQUEST_BYTES}")
        line = self._exchange(request)
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

    def _exchange(self, request: bytes) -> bytes:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            deadline = time.monotonic() + self.timeout
            try:
                sock.connect(os.fspath(self.path))
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
