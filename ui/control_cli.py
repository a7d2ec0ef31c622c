"""``overt status | pause | resume | discard | consent | exemption | ledger``.

This module is an entry point and a thin client of the running agent: each
command parses its arguments, makes one or two calls through
:class:`agent.control.client.ControlClient` and prints the answer, in
sentences by default (``ui.cli_text``) or, with ``--json``, the agent's
result object as it came. It holds no capture state and decides nothing;
the agent does. Arguments are checked with the control API's own models
(``overt.wire.control``) before anything is sent. It imports nothing of the
agent but ``agent.control.client`` and ``agent.control.errors``.

Exit status: 0 done; 1 the agent refused, failed or is not running (one line
on stderr); 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agent.control.client import (
    DEFAULT_CLIENT_TIMEOUT,
    ControlClient,
    default_socket_path,
    read_result,
    request_args,
)
from agent.control.errors import AgentNotRunning, ControlError, UnexpectedAnswer
from overt.wire.control import (
    CONSENT_ACCEPT,
    CONSENT_DECLINE,
    CONSENT_SHOW,
    DEFAULT_LEDGER_DAYS,
    DISCARD,
    EXEMPTION_LIST,
    EXEMPTION_REQUEST,
    LEDGER,
    MAX_DISCARD_MINUTES,
    MAX_EXEMPTION_DAYS,
    MAX_LEDGER_DAYS,
    MAX_PAUSE_MINUTES,
    PAUSE,
    RESUME,
    STATUS,
    Command,
    ControlFormatError,
)
from overt.wire.control_results import CATEGORIES, Result
from ui.cli_text import (
    clock_time,
    consent_lines,
    exemption_lines,
    ledger_lines,
    local_moment,
    plural,
    status_lines,
)
from ui.exemption_view import DEFAULT_DAYS as DEFAULT_EXEMPTION_DAYS
from ui.presentation import minutes_left, terminal_headline

R = TypeVar("R", bound=Result)


# ------------------------------------------------------------------ plumbing


class _Usage(Exception):
    """Arguments that parse but cannot be used (exit 2)."""


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def _common(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--socket",
        type=Path,
        default=default,
        metavar="PATH",
        help="the agent's control socket (default: $XDG_RUNTIME_DIR/overt/agent.sock)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print the agent's result object as it came, as JSON",
    )


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def _print_lines(lines: Sequence[str]) -> None:
    print("\n".join(lines))


Action = Callable[[argparse.Namespace, ControlClient], int]


def _run(
    argv: Sequence[str],
    prog: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    action: Action,
) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    _common(parser)
    add_arguments(parser)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    socket_path = getattr(args, "socket", None) or default_socket_path(os.environ)
    client = ControlClient(socket_path, timeout=DEFAULT_CLIENT_TIMEOUT)
    try:
        return action(args, client)
    except _Usage as exc:
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except AgentNotRunning as exc:
        print(
            f"overt: the agent is not running ({exc.why} at {exc.path}). "
            "Start it with `overt agent run …` or `overt tray`.",
            file=sys.stderr,
        )
        return 1
    except UnexpectedAnswer as exc:
        # An answer of another shape (an agent of another version): say so
        # rather than show a traceback; --json still shows it as it is.
        print(f"{prog}: {exc.message}; --json shows it as it is", file=sys.stderr)
        return 1
    except ControlError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    return None


def _ask(
    client: ControlClient, command: Command[Any, R], as_json: bool, **args: object
) -> R | None:
    """Carry out ``command``: with ``--json`` print its result object as it came
    and return None, else return it read by its model."""
    raw = client.call(command.name, request_args(command, **args))
    if as_json:
        _print_json(raw)
        return None
    return read_result(command, raw)


# ------------------------------------------------------------------ commands


def status(argv: Sequence[str], prog: str = "overt status") -> int:
    def act(args: argparse.Namespace, client: ControlClient) -> int:
        result = _ask(client, STATUS, args.json)
        if result is not None:
            _print_lines(status_lines(result))
        return 0

    return _run(
        argv, prog, "Is capture on, and why; pause, spool and upload state.", _no_arguments, act
    )


def pause(argv: Sequence[str], prog: str = "overt pause") -> int:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "minutes",
            nargs="?",
            type=_bounded_int(1, MAX_PAUSE_MINUTES),
            metavar="MIN",
            help="how long (default and maximum: the policy's, usually 30)",
        )

    def act(args: argparse.Namespace, client: ControlClient) -> int:
        result = _ask(client, PAUSE, args.json, minutes=args.minutes)
        if result is None:
            return 0
        maximum = result.pause_max_minutes
        if args.minutes is not None and args.minutes > maximum:
            print(f"The policy allows pauses of at most {maximum} minutes.")
        if result.reason == "paused" and result.paused_until_ms is not None and result.paused:
            left = minutes_left(result.pause_remaining_ms)
            print(
                f"Paused for {plural(left, 'minute')} (until "
                f"{clock_time(result.paused_until_ms)}); capture resumes by itself."
            )
        else:
            print(terminal_headline(result))
        return 0

    return _run(argv, prog, "Pause capture; it resumes by itself.", add, act)


def resume(argv: Sequence[str], prog: str = "overt resume") -> int:
    def act(args: argparse.Namespace, client: ControlClient) -> int:
        result = _ask(client, RESUME, args.json)
        if result is not None:
            print("Capture is no longer paused.")
            print(terminal_headline(result))
        return 0

    return _run(argv, prog, "End a pause now.", _no_arguments, act)


def discard(argv: Sequence[str], prog: str = "overt discard") -> int:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "minutes",
            type=_bounded_int(1, MAX_DISCARD_MINUTES),
            metavar="MIN",
            help="discard what was captured in the last MIN minutes",
        )

    def act(args: argparse.Namespace, client: ControlClient) -> int:
        result = _ask(client, DISCARD, args.json, minutes=args.minutes)
        if result is None:
            return 0
        print(
            f"Discarded {plural(result.batches_deleted, 'batch', 'batches')}"
            f" and {plural(result.events_dropped, 'buffered event')} from the last "
            f"{plural(args.minutes, 'minute')}."
        )
        span = result.erasure_range
        if result.erasure_requested and span is not None:
            print(
                "Part of it had already been uploaded: the collector was asked to erase "
                f"{local_moment(span[0])} to {clock_time(span[1])}."
            )
        return 0

    return _run(argv, prog, "Delete what was captured in the last MIN minutes.", add, act)


def _yes_or_no(prompt: str) -> bool | None:
    """Ask yes/no on the terminal until answered; None at end of input."""
    while True:
        try:
            reply = input(prompt).strip().lower()
        except EOFError:
            print()  # end the prompt's line
            return None
        if reply in {"y", "yes"}:
            return True
        if reply in {"n", "no"}:
            return False
        print("Please answer y or n.")


def consent(argv: Sequence[str], prog: str = "overt consent") -> int:
    def add(parser: argparse.ArgumentParser) -> None:
        answer = parser.add_mutually_exclusive_group()
        answer.add_argument("--accept", action="store_true", help="accept the notice shown")
        answer.add_argument("--decline", action="store_true", help="decline the notice shown")

    def act(args: argparse.Namespace, client: ControlClient) -> int:
        answering = args.accept or args.decline
        raw = client.call(CONSENT_SHOW.name)
        if args.json and not answering:
            _print_json(raw)
            return 0
        shown = read_result(CONSENT_SHOW, raw)
        if not args.json:
            _print_lines(consent_lines(shown))
            print()
        if args.accept:
            accepted: bool | None = True
        elif args.decline:
            accepted = False
        elif sys.stdin.isatty():
            accepted = _yes_or_no("Do you agree to capture under this policy? [y/n] ")
            if accepted is None:
                print(f"{prog}: no answer given; nothing was recorded", file=sys.stderr)
                return 1
        else:
            print("To answer: `overt consent --accept` or `overt consent --decline`.")
            return 0
        command = CONSENT_ACCEPT if accepted else CONSENT_DECLINE
        result = _ask(client, command, args.json, policy_version=shown.policy_version)
        if result is not None:
            print("Consent recorded: " + ("accepted." if accepted else "declined."))
            print(terminal_headline(result))
        return 0

    return _run(
        argv,
        prog,
        "Show the capture notice of the policy in force; accept or decline it. "
        "Without --accept or --decline the question is asked on the terminal.",
        add,
        act,
    )


def exemption(argv: Sequence[str], prog: str = "overt exemption") -> int:
    def add(parser: argparse.ArgumentParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        request = commands.add_parser(
            "request",
            help="ask an admin to exempt you",
            description="Ask an admin to exempt you; `overt exemption list` shows the answer.",
        )
        _common(request, suppress=True)
        request.add_argument("--category", required=True, choices=CATEGORIES)
        request.add_argument("--reason", required=True, help="why, in a sentence or two")
        request.add_argument(
            "--days",
            type=_bounded_int(1, MAX_EXEMPTION_DAYS),
            default=DEFAULT_EXEMPTION_DAYS,
            metavar="N",
            help=f"for how long (default {DEFAULT_EXEMPTION_DAYS} days)",
        )
        listing = commands.add_parser("list", help="your requests and their answers")
        _common(listing, suppress=True)

    def act(args: argparse.Namespace, client: ControlClient) -> int:
        if args.command == "request":
            reason = args.reason.strip()
            try:  # the server's own check, so that a refusal is a usage error here
                EXEMPTION_REQUEST.make_args(
                    category=args.category, reason=reason, duration_days=args.days
                )
            except ControlFormatError as exc:
                raise _Usage(exc.message) from exc
            sent = _ask(
                client,
                EXEMPTION_REQUEST,
                args.json,
                category=args.category,
                reason=reason,
                duration_days=args.days,
            )
            if sent is not None:
                print(
                    f"Exemption request {sent.request_id} sent ({sent.status}). "
                    "An admin reviews it; `overt exemption list` shows the answer."
                )
            return 0
        listed = _ask(client, EXEMPTION_LIST, args.json)
        if listed is not None:
            _print_lines(exemption_lines(listed.requests))
        return 0

    return _run(argv, prog, "Request an exemption from capture; list your requests.", add, act)


def ledger(argv: Sequence[str], prog: str = "overt ledger") -> int:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--days",
            type=_bounded_int(1, MAX_LEDGER_DAYS),
            default=DEFAULT_LEDGER_DAYS,
            metavar="N",
            help=f"how far back (default {DEFAULT_LEDGER_DAYS} days)",
        )

    def act(args: argparse.Namespace, client: ControlClient) -> int:
        result = _ask(client, LEDGER, args.json, days=args.days)
        if result is not None:
            _print_lines(ledger_lines(result, args.days))
        return 0

    return _run(
        argv, prog, "Every batch captured on this machine, and what became of it.", add, act
    )
