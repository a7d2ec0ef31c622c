"""The agent's local control API (version 1): every message, defined once.

This module owns the control API's wire format: the framing (one UTF-8 JSON
object per line each way), the protocol version, the size limits, the
argument ranges, the error codes, one pydantic model per command's
arguments, and :data:`COMMANDS`, the one table of what the agent accepts,
tying each command to its arguments and to its result model
(``overt.wire.control_results``). The server (``agent.control``) parses
requests with :func:`parse_request` and answers with the result models; the
client (``agent.control.client``) checks arguments with
:meth:`Command.make_args` and reads answers with :func:`parse_response` and
:meth:`Command.parse_result`; the tray and ``overt status|pause|…`` read the
models. ``docs/CONTROL.md`` is generated from these declarations
(``tools/control_doc.py``), and a test fails when it differs.

It owns no socket, thread or clock, and no decision: what a command does is
the agent's. It imports nothing of ours but ``overt.wire``.

A request is checked in full: an unknown field, an unknown argument, a
wrong type (a boolean is not a number, ``1.0`` is not a whole number,
``NaN`` is not JSON) or a value out of range is refused with words that
name it, the words the CLI and the tray show.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from .control_results import (
    CATEGORIES,
    ConsentOffer,
    DiscardReport,
    ExemptionCategory,
    ExemptionRequestSent,
    LedgerReport,
    RequestedExemptions,
    Result,
    Status,
)
from .errors import FormatError

#: The wire format's version, sent as ``"v"`` in every request.
PROTOCOL_VERSION = 1
#: The longest request line the server reads, without its newline.
MAX_REQUEST_BYTES = 64 * 1024
#: The longest response line the client reads, without its newline. Larger
#: than requests because a week's ledger holds thousands of batches.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024

#: Argument ranges, checked by the server before the agent sees a request.
MAX_PAUSE_MINUTES = 1_000_000  # longer than the policy allows is clamped by the agent
MAX_DISCARD_MINUTES = 366 * 24 * 60
MAX_LEDGER_DAYS = 366
DEFAULT_LEDGER_DAYS = 7
#: The collector's limit (``collector.schemas``): a longer request would be refused there.
MAX_EXEMPTION_DAYS = 365
MAX_REASON_CHARS = 2000
MAX_POLICY_VERSION = 2**63 - 1


class ErrorCode(StrEnum):
    """The codes an error answer may carry on the wire."""

    BAD_REQUEST = "bad_request"
    UNKNOWN_COMMAND = "unknown_command"
    NOT_ALLOWED = "not_allowed"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    BUSY = "busy"


#: What each code means, for docs/CONTROL.md.
ERROR_MEANING: dict[ErrorCode, str] = {
    ErrorCode.BAD_REQUEST: "malformed request, wrong type or range; the agent was not called",
    ErrorCode.UNKNOWN_COMMAND: "no such command",
    ErrorCode.NOT_ALLOWED: "the agent refuses, e.g. an answer to the notice of another policy "
    "version (a pause longer than the policy allows is clamped, not refused, and resuming when "
    "not paused is fine)",
    ErrorCode.UNAVAILABLE: "the part needed is not in this agent (no collector for exemption "
    "requests, no spool for discard); nothing changed",
    ErrorCode.INTERNAL: "a bug or failure inside the agent; the message never carries a "
    "traceback or captured content, the agent's log names the exception type",
    ErrorCode.BUSY: "too many connections: the request was not read and nothing was done; "
    "ask again",
}


class ControlFormatError(FormatError):
    """A control message that is not what this module defines.

    ``code`` is the error code to answer a bad request with (``bad_request``
    or ``unknown_command``); a bad result or response is ``bad_request`` too,
    and the client reports it as the agent's fault.
    """

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ------------------------------------------------------------------ framing


def encode_line(value: object) -> bytes:
    """One message line, newline included: compact UTF-8 JSON, no NaN.

    Raises ValueError or TypeError for a value JSON cannot carry."""
    return (
        json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()
        + b"\n"
    )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def decode_line(line: bytes) -> object:
    """One line (without its newline) as JSON, strictly: UTF-8, no NaN or
    Infinity, not nested past the parser's depth. ValueError otherwise."""
    try:
        return json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


def encode_request(cmd: str, args: Mapping[str, Any] | None = None) -> bytes:
    """A request line, newline included (the arguments as given, unchecked)."""
    return encode_line({"v": PROTOCOL_VERSION, "cmd": cmd, "args": dict(args or {})})


def ok_response(result: BaseModel) -> dict[str, Any]:
    """The response object carrying ``result``."""
    return {"ok": True, "result": result.model_dump(mode="json")}


def error_response(code: ErrorCode | str, message: str) -> dict[str, Any]:
    """The response object of a refusal or failure."""
    return {"ok": False, "error": str(code), "message": message}


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Request(_Envelope):
    """``{"v": 1, "cmd": "<command>", "args": {…}}``; ``args`` may be left out
    or null when a command takes none."""

    v: StrictInt = Field(description="the protocol version, 1")
    cmd: StrictStr = Field(description="the command's name")
    args: dict[str, Any] | None = Field(None, description="the command's arguments")


class OkResponse(_Envelope):
    """The command was carried out."""

    model_config = ConfigDict(extra="ignore")
    ok: Literal[True]
    result: dict[str, Any] = Field(description="the command's result object")


class ErrorResponse(_Envelope):
    """The command was refused or failed; nothing is half done."""

    model_config = ConfigDict(extra="ignore")
    ok: Literal[False]
    error: StrictStr = Field(description="one of the error codes")
    message: StrictStr = Field(description="words for a person")


def parse_response(line: bytes) -> OkResponse | ErrorResponse:
    """A response line (without its newline), or ControlFormatError."""
    try:
        value = decode_line(line)
    except ValueError as exc:
        raise ControlFormatError("the answer is not JSON") from exc
    if not isinstance(value, dict) or type(value.get("ok")) is not bool:
        raise ControlFormatError("the answer is not a control response")
    try:
        if value["ok"]:
            return OkResponse.model_validate(value)
        return ErrorResponse.model_validate(value)
    except ValidationError as exc:
        raise ControlFormatError(f"the answer is malformed ({describe(exc, 'response')})") from exc


# ------------------------------------------------------------------ arguments


class Arguments(BaseModel):
    """Base of every command's arguments: nothing unknown, nothing loose."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    #: Refusals in words of their own, by field, for a value above its maximum.
    too_high: ClassVar[dict[str, Callable[[int], str]]] = {}


class NoArguments(Arguments):
    """The command takes no arguments."""


class PauseArguments(Arguments):
    minutes: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_PAUSE_MINUTES,
        description="how long; default and maximum: the policy's (longer is clamped)",
    )


class DiscardArguments(Arguments):
    minutes: StrictInt = Field(
        ge=1, le=MAX_DISCARD_MINUTES, description="discard what was captured in the last MIN"
    )


class ConsentAnswerArguments(Arguments):
    policy_version: StrictInt = Field(
        ge=1, le=MAX_POLICY_VERSION, description="the version of the notice the person read"
    )


def exemption_too_long(days: int) -> str:
    """The refusal of an exemption request longer than the collector accepts."""
    return (
        f"an exemption can last at most {MAX_EXEMPTION_DAYS} days, not {days}; "
        "ask for a shorter one (and again when it ends)"
    )


class ExemptionRequestArguments(Arguments):
    too_high: ClassVar[dict[str, Callable[[int], str]]] = {"duration_days": exemption_too_long}

    category: ExemptionCategory = Field(description="why the exemption is asked for")
    reason: StrictStr = Field(
        min_length=1, max_length=MAX_REASON_CHARS, description="in the person's words; trimmed"
    )
    duration_days: StrictInt = Field(
        ge=1, le=MAX_EXEMPTION_DAYS, description="for how long (the collector's limit)"
    )

    @field_validator("reason")
    @classmethod
    def _trimmed(cls, reason: str) -> str:
        if not reason.strip():
            raise ValueError("reason must be a non-empty text")
        return reason.strip()


class LedgerArguments(Arguments):
    days: StrictInt = Field(
        DEFAULT_LEDGER_DAYS, ge=1, le=MAX_LEDGER_DAYS, description="how far back; null: 7"
    )

    @field_validator("days", mode="before")
    @classmethod
    def _default_for_null(cls, days: object) -> object:
        return DEFAULT_LEDGER_DAYS if days is None else days


# ------------------------------------------------------------------ commands

A = TypeVar("A", bound=Arguments)
R = TypeVar("R", bound=Result)


@dataclass(frozen=True)
class Command(Generic[A, R]):
    """One command: its name, its arguments' model and its result's model.

    ``urgent`` commands are carried out ahead of the others (and always have
    a thread of their own), so that pausing works during a flood.
    """

    name: str
    arguments: type[A]
    result: type[R]
    summary: str
    urgent: bool = False

    def make_args(self, **values: object) -> A:
        """The arguments, checked as the server checks them (ControlFormatError)."""
        return parse_arguments(self, values)

    def parse_result(self, value: object) -> R:
        """A result object as read from an answer, or ControlFormatError
        naming the first field that is wrong."""
        try:
            return self.result.model_validate(value)
        except ValidationError as exc:
            raise ControlFormatError(describe(exc, self.name)) from exc


STATUS = Command("status", NoArguments, Status, "is capture on, and why", urgent=True)
PAUSE = Command("pause", PauseArguments, Status, "pause capture", urgent=True)
RESUME = Command("resume", NoArguments, Status, "end a pause now", urgent=True)
DISCARD = Command("discard", DiscardArguments, DiscardReport, "delete what was captured lately")
CONSENT_SHOW = Command(
    "consent.show", NoArguments, ConsentOffer, "the notice of the policy in force"
)
CONSENT_ACCEPT = Command(
    "consent.accept", ConsentAnswerArguments, Status, "accept the notice of that version"
)
CONSENT_DECLINE = Command(
    "consent.decline", ConsentAnswerArguments, Status, "decline the notice of that version"
)
EXEMPTION_REQUEST = Command(
    "exemption.request",
    ExemptionRequestArguments,
    ExemptionRequestSent,
    "ask an admin, through the collector",
)
EXEMPTION_LIST = Command(
    "exemption.list", NoArguments, RequestedExemptions, "this device's requests and answers"
)
LEDGER = Command("ledger", LedgerArguments, LedgerReport, "every batch, and what became of it")

#: Every command the agent accepts, by name: the single list.
COMMANDS: dict[str, Command[Any, Any]] = {
    c.name: c
    for c in (
        STATUS,
        PAUSE,
        RESUME,
        DISCARD,
        CONSENT_SHOW,
        CONSENT_ACCEPT,
        CONSENT_DECLINE,
        EXEMPTION_REQUEST,
        EXEMPTION_LIST,
        LEDGER,
    )
}


def parse_request(line: bytes) -> tuple[Command[Any, Any], Arguments]:
    """A request line (without its newline) as its command and checked
    arguments, or ControlFormatError with the code to answer with."""
    try:
        value = decode_line(line)
    except ValueError as exc:
        raise ControlFormatError("the request is not a UTF-8 JSON object") from exc
    if not isinstance(value, dict):
        raise ControlFormatError("the request is not a JSON object")
    extra = sorted(set(value) - set(Request.model_fields))
    if extra:
        raise ControlFormatError(f"unknown request field {extra[0]!r}")
    version = value.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ControlFormatError(
            f"unsupported protocol version (this agent speaks v{PROTOCOL_VERSION})"
        )
    cmd = value.get("cmd")
    if not isinstance(cmd, str):
        raise ControlFormatError("cmd must be a command name")
    command = COMMANDS.get(cmd)
    if command is None:
        raise ControlFormatError(f"unknown command {cmd[:64]!r}", ErrorCode.UNKNOWN_COMMAND)
    args = value.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ControlFormatError("args must be a JSON object")
    return command, parse_arguments(command, args)


def parse_arguments(command: Command[A, Any], args: Mapping[str, object]) -> A:
    """``args`` checked against the command's model, or ControlFormatError in words."""
    try:
        return command.arguments.model_validate(dict(args))
    except ValidationError as exc:
        raise ControlFormatError(_argument_words(command, exc)) from exc


def _bounds(model: type[Arguments], name: str) -> tuple[int | None, int | None]:
    low = high = None
    for rule in model.model_fields[name].metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


def _argument_words(command: Command[Any, Any], exc: ValidationError) -> str:
    """The first problem of the arguments, in the words the CLI and tray show."""
    error = exc.errors(include_url=False)[0]
    loc = error["loc"]
    name = str(loc[0]) if loc else "args"
    kind = error["type"]
    value = error.get("input")
    model = command.arguments
    if kind == "extra_forbidden":
        return f"{command.name}: unknown argument {name!r}"
    if kind == "missing":
        return f"{command.name} needs {name}"
    if kind == "int_type":
        return f"{name} must be a whole number"
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = _bounds(model, name)
        if kind == "less_than_equal" and name in model.too_high and isinstance(value, int):
            return str(model.too_high[name](value))
        return f"{name} must be between {low} and {high}, not {value}"
    if kind == "literal_error" and name == "category":
        return f"category must be one of {', '.join(CATEGORIES)}"
    if kind == "string_type":
        return f"{name} must be a text"
    if kind == "string_too_short":
        return f"{name} must be a non-empty text"
    if kind == "string_too_long":
        return f"{name} must be at most {MAX_REASON_CHARS} characters"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return f"{name}: {error['msg']}"


def describe(exc: ValidationError, root: str) -> str:
    """The first problem of a message, with the path of its field:
    ``status.spool.bytes: Field required``."""
    error = exc.errors(include_url=False)[0]
    path = root
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return f"{path}: {error['msg']}"
