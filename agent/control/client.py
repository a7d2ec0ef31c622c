"""The control API's client: one typed call per command, over the agent's socket.

This module owns :class:`ControlClient`, what the tray and ``overt
status|pause|…`` use to reach a running agent, and
:func:`default_socket_path`. Every method sends one request of
``overt.wire.control`` and returns the command's result model, or raises
one of :mod:`agent.control.errors`. It imports only the standard library,
``overt.wire`` and those errors — never the server, the agent or Qt —
because the tray imports it.

What the client guarantees
--------------------------
- Arguments are checked with the server's own models before anything is
  sent: a refusal in the same words, and nothing reaches the agent.
- One connection per call, so one client may be used from several threads.
- An agent too busy to take the connection (``busy``: the request was not
  read, so nothing was done), or whose queue of connections waiting to be
  accepted is full, is asked again after a short and growing wait until the
  timeout runs out.
- An answer that is not a control response is a
  :class:`~agent.control.errors.ControlProtocolError`; a result of the wrong
  shape is an :class:`~agent.control.errors.UnexpectedAnswer` naming the
  field; a refusal is a :class:`~agent.control.errors.ControlError` with the
  agent's code and words.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from agent.control.errors import (
    AgentNotRunning,
    ControlError,
    ControlProtocolError,
    UnexpectedAnswer,
)
from overt.wire.control import (
    CONSENT_ACCEPT,
    CONSENT_DECLINE,
    CONSENT_SHOW,
    DEFAULT_LEDGER_DAYS,
    DISCARD,
    EXEMPTION_LIST,
    EXEMPTION_REQUEST,
    LEDGER,
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    PAUSE,
    RESUME,
    STATUS,
    Command,
    ControlFormatError,
    ErrorResponse,
    encode_request,
    parse_response,
)
from overt.wire.control_results import (
    ConsentOffer,
    DiscardReport,
    ExemptionRequestSent,
    LedgerReport,
    RequestedExemptions,
    Result,
    Status,
)

#: Seconds the client waits for the agent to answer.
DEFAULT_CLIENT_TIMEOUT = 5.0
#: The client's first wait before asking a busy agent again (it doubles).
_BUSY_RETRY_S = 0.02

R = TypeVar("R", bound=Result)
JSONObject = dict[str, Any]


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


class LineTooLong(Exception):
    """A line longer than the reader's limit."""


class LineReader:
    """Reads newline-terminated lines from a socket, each within ``limit``
    bytes and before a deadline. Returns None at a clean end of stream."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self._sock = sock
        self._limit = limit
        self._buffer = bytearray()

    def read_line(self, timeout: float) -> bytes | None:
        """One line without its newline. Raises TimeoutError, LineTooLong,
        or OSError (connection reset); None when the peer closed cleanly."""
        deadline = time.monotonic() + timeout
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                if newline > self._limit:
                    raise LineTooLong
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            if len(self._buffer) > self._limit:
                raise LineTooLong
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


class ControlClient:
    """Talks to the agent at ``path``; one connection per call.

    Every command method returns the command's result model (``overt.wire.
    control``), or raises :class:`AgentNotRunning`, :class:`ControlError` (a
    refusal, with the agent's code and words), :class:`ControlProtocolError`
    or :class:`UnexpectedAnswer`.
    """

    def __init__(
        self, path: str | os.PathLike[str], timeout: float = DEFAULT_CLIENT_TIMEOUT
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.path = Path(path)
        self.timeout = timeout

    # ------------------------------------------------------------ commands

    def status(self) -> Status:
        return self.run(STATUS)

    def pause(self, minutes: int | None = None) -> Status:
        return self.run(PAUSE, minutes=minutes)

    def resume(self) -> Status:
        return self.run(RESUME)

    def discard(self, minutes: int) -> DiscardReport:
        return self.run(DISCARD, minutes=minutes)

    def consent_show(self) -> ConsentOffer:
        return self.run(CONSENT_SHOW)

    def consent_accept(self, policy_version: int) -> Status:
        return self.run(CONSENT_ACCEPT, policy_version=policy_version)

    def consent_decline(self, policy_version: int) -> Status:
        return self.run(CONSENT_DECLINE, policy_version=policy_version)

    def exemption_request(
        self, category: str, reason: str, duration_days: int
    ) -> ExemptionRequestSent:
        return self.run(
            EXEMPTION_REQUEST, category=category, reason=reason, duration_days=duration_days
        )

    def exemption_list(self) -> RequestedExemptions:
        return self.run(EXEMPTION_LIST)

    def ledger(self, days: int = DEFAULT_LEDGER_DAYS) -> LedgerReport:
        return self.run(LEDGER, days=days)

    # ------------------------------------------------------------ the generic call

    def run(self, command: Command[Any, R], **args: object) -> R:
        """Carry out ``command`` with ``args`` and return its result model."""
        return read_result(command, self.call(command.name, request_args(command, **args)))

    def call(self, cmd: str, args: Mapping[str, Any] | None = None) -> JSONObject:
        """Send one request as given and return its result object unread (the
        raw form of every method, for ``--json``).

        An agent too busy to take the connection is asked again, after a
        short and growing wait, until the timeout runs out."""
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
            response = parse_response(line)
        except ControlFormatError as exc:
            raise ControlProtocolError(f"the agent's answer is not usable: {exc.message}") from exc
        if isinstance(response, ErrorResponse):
            raise ControlError(response.error, response.message)
        return response.result

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
                line = LineReader(sock, MAX_RESPONSE_BYTES).read_line(
                    max(deadline - time.monotonic(), 0.001)
                )
            except TimeoutError as exc:
                raise ControlProtocolError(
                    f"the agent did not answer within {self.timeout:g} s", code="timeout"
                ) from exc
            except LineTooLong as exc:
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


def request_args(command: Command[Any, Any], **args: object) -> JSONObject:
    """``args`` checked as the server checks them, as the request carries them
    (unset optional arguments left out); a refusal is ``bad_request``."""
    try:
        given = {name: value for name, value in args.items() if value is not None}
        command.make_args(**given)
    except ControlFormatError as exc:
        raise ControlError(str(exc.code), exc.message) from exc
    return given  # as given: the server trims a reason itself


def read_result(command: Command[Any, R], result: JSONObject) -> R:
    """A result object as the command's model, or UnexpectedAnswer naming the field."""
    try:
        return command.parse_result(result)
    except ControlFormatError as exc:
        raise UnexpectedAnswer(
            f"the agent's answer is not what this version of overt expects ({exc})"
        ) from exc
