"""One request line in, one response line out: the control API's command dispatch.

This module owns :class:`ControlTarget` (what the control API drives: one
method per command of ``overt.wire.control``) and :func:`handle_request`,
which parses a request with the wire models, calls the target and turns
whatever happens into a response — it never raises. It owns neither the
socket (``agent.control.server``) nor what a command does (the target:
``agent.control_target`` for the running agent).

Guarantees: the target sees only requests that passed the wire models in
full (shape, version, command, argument names, types and ranges); a refusal
raised as :class:`~agent.control.errors.ControlError` keeps its code if it
is a wire code and becomes ``internal`` otherwise; any other exception, and
an answer that is not the command's result model, becomes ``internal`` and
is logged by the command's name and the exception's type only, never by
arguments or content.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from agent.control.errors import ControlError
from overt.wire.control import (
    COMMANDS,
    CONSENT_ACCEPT,
    CONSENT_DECLINE,
    CONSENT_SHOW,
    DISCARD,
    EXEMPTION_LIST,
    EXEMPTION_REQUEST,
    LEDGER,
    MAX_RESPONSE_BYTES,
    PAUSE,
    RESUME,
    STATUS,
    Arguments,
    Command,
    ControlFormatError,
    ErrorCode,
    encode_line,
    error_response,
    ok_response,
    parse_request,
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

log = logging.getLogger(__name__)

_WIRE_CODES = frozenset(code.value for code in ErrorCode)
#: Requests of the urgent commands, carried out ahead of the others. Only an
#: order: the request is checked in full like any other.
_URGENT = re.compile(
    rb'"cmd"\s*:\s*"(?:'
    + b"|".join(re.escape(c.name.encode()) for c in COMMANDS.values() if c.urgent)
    + rb')"'
)
C = TypeVar("C")


class ControlTarget(Protocol):
    """What the control API drives: one method per command.

    Arguments arrive already checked (``overt.wire.control``'s argument
    models). Each method returns the command's result model and raises
    :class:`ControlError` with a wire code (``not_allowed``,
    ``unavailable``, ``bad_request``) to refuse.
    """

    def status(self) -> Status: ...

    def pause(self, minutes: int | None) -> Status: ...

    def resume(self) -> Status: ...

    def discard(self, minutes: int) -> DiscardReport: ...

    def consent_show(self) -> ConsentOffer: ...

    def consent_accept(self, policy_version: int) -> Status: ...

    def consent_decline(self, policy_version: int) -> Status: ...

    def exemption_request(
        self, category: str, reason: str, duration_days: int
    ) -> ExemptionRequestSent: ...

    def exemption_list(self) -> RequestedExemptions: ...

    def ledger(self, days: int) -> LedgerReport: ...


_Call = Callable[[ControlTarget, Any], Result]

#: How each command reaches the target, with its checked arguments.
_CALLS: dict[str, _Call] = {
    STATUS.name: lambda t, a: t.status(),
    PAUSE.name: lambda t, a: t.pause(a.minutes),
    RESUME.name: lambda t, a: t.resume(),
    DISCARD.name: lambda t, a: t.discard(a.minutes),
    CONSENT_SHOW.name: lambda t, a: t.consent_show(),
    CONSENT_ACCEPT.name: lambda t, a: t.consent_accept(a.policy_version),
    CONSENT_DECLINE.name: lambda t, a: t.consent_decline(a.policy_version),
    EXEMPTION_REQUEST.name: lambda t, a: t.exemption_request(a.category, a.reason, a.duration_days),
    EXEMPTION_LIST.name: lambda t, a: t.exemption_list(),
    LEDGER.name: lambda t, a: t.ledger(a.days),
}


def carry_out(target: ControlTarget, command: Command[Any, Any], args: Arguments) -> Result:
    """Call the target for one checked request (exceptions pass through)."""
    return _CALLS[command.name](target, args)


def handle_request(target: ControlTarget, line: bytes) -> dict[str, Any]:
    """Answer one request line (without its newline) with a response object.

    Never raises: every failure becomes an error answer.
    """
    try:
        command, args = parse_request(line)
    except ControlFormatError as exc:
        return error_response(exc.code, exc.message)
    cmd = command.name
    try:
        result = carry_out(target, command, args)
    except ControlError as exc:
        code = exc.code if exc.code in _WIRE_CODES else ErrorCode.INTERNAL
        return error_response(code, exc.message)
    except Exception as exc:
        # The type only: an exception's text may quote captured content.
        log.error("control command %s failed with %s", cmd, type(exc).__name__)
        return error_response(
            ErrorCode.INTERNAL, f"the agent could not carry out {cmd}; its log says why"
        )
    if not isinstance(result, command.result):
        log.error("control command %s returned %s, not its result", cmd, type(result).__name__)
        return error_response(ErrorCode.INTERNAL, f"the agent gave no answer to {cmd}")
    try:
        return ok_response(result)
    except Exception as exc:
        log.error("control answer to %s cannot be encoded: %s", cmd, type(exc).__name__)
        return error_response(ErrorCode.INTERNAL, "the agent's answer could not be encoded")


def encode_response(response: dict[str, Any]) -> bytes:
    """One response line, newline included; an unencodable or oversized
    response becomes an ``internal`` error answer."""
    try:
        line = encode_line(response)
    except (TypeError, ValueError) as exc:
        log.error("control answer cannot be encoded: %s", type(exc).__name__)
        line = encode_line(
            error_response(ErrorCode.INTERNAL, "the agent's answer could not be encoded")
        )
    if len(line) - 1 > MAX_RESPONSE_BYTES:
        log.error("control answer of %d bytes is over the limit", len(line))
        line = encode_line(
            error_response(ErrorCode.INTERNAL, "the agent's answer is too large to send")
        )
    return line


#: The answer to a connection there is no room for (sent before its request is read).
BUSY_LINE = encode_response(
    error_response(
        ErrorCode.BUSY,
        "The agent is answering too many control connections; nothing was done. Try again.",
    )
)


def is_urgent(line: bytes) -> bool:
    """Whether a request line asks for a command carried out ahead of others."""
    return _URGENT.search(line) is not None


class CommandThreads(Generic[C]):
    """A fixed set of threads that carry out requests, urgent ones first.

    At most ``threads - 1`` of them run a request that is not urgent at one
    time, so one is always free for ``pause``, ``resume`` and ``status``.
    ``done(conn, answer)`` is called on a command thread with the answer
    line for the connection ``conn`` (of whatever type the server uses).
    """

    def __init__(
        self,
        target: ControlTarget,
        threads: int,
        done: Callable[[C, bytes], None],
    ) -> None:
        self._target = target
        self._done = done
        self._cond = threading.Condition()
        self._urgent: deque[tuple[C, bytes]] = deque()
        self._other: deque[tuple[C, bytes]] = deque()
        self._other_limit = threads - 1
        self._other_running = 0
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, name="overt-control-cmd", daemon=True)
            for _ in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, conn: C, line: bytes, *, urgent: bool) -> None:
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

    def _next(self) -> tuple[C, bytes, bool] | None:
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
                answer = encode_response(
                    error_response(ErrorCode.INTERNAL, "the agent could not answer")
                )
            finally:
                if not urgent:
                    with self._cond:
                        self._other_running -= 1
                        self._cond.notify()
            self._done(conn, answer)
