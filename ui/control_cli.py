"""``overt status | pause | resume | discard | consent | exemption | ledger``.

This module is an entry point and a thin client of the running agent: each
command parses its arguments, makes one or two calls through
:class:`agent.control.ControlClient` and prints the answer, in sentences by
default or as the raw JSON result with ``--json``. It holds no capture state
and decides nothing; the agent does. It imports nothing of the agent but
``agent.control``.

The ``*_lines`` functions turn result objects into the lines printed here;
they are pure, so the tray may reuse them.

Exit status: 0 done; 1 the agent refused, failed or is not running (one line
on stderr); 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.control import (
    DEFAULT_CLIENT_TIMEOUT,
    DEFAULT_LEDGER_DAYS,
    MAX_DISCARD_MINUTES,
    MAX_EXEMPTION_DAYS,
    MAX_LEDGER_DAYS,
    MAX_PAUSE_MINUTES,
    MAX_REASON_CHARS,
    AgentNotRunning,
    ControlClient,
    ControlError,
    default_socket_path,
)

JSONObject = dict[str, Any]

CATEGORIES = ("bandwidth", "sensitive", "battery", "other")
DEFAULT_EXEMPTION_DAYS = 30


# ------------------------------------------------------------------ wording


def size(n: int) -> str:
    """Bytes in binary units, one decimal: ``1.5 MiB``."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def clock_time(ms: int) -> str:
    """Local wall-clock time ``HH:MM`` of an epoch-milliseconds instant."""
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%H:%M")


def local_moment(ms: int) -> str:
    """Local ``YYYY-MM-DD HH:MM`` of an epoch-milliseconds instant."""
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M")


def _day(iso: str | None) -> str:
    """The date part of an ISO 8601 instant, in UTC; '?' when unknown."""
    if not iso:
        return "?"
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d")
    except ValueError:
        return iso


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def pause_remaining_minutes(status: Mapping[str, Any]) -> int | None:
    """Whole minutes of pause left (rounded up), or None when not paused."""
    until, now = status.get("paused_until_ms"), status.get("now_ms")
    if not isinstance(until, int) or not isinstance(now, int) or until <= now:
        return None
    return math.ceil((until - now) / 60_000)


def headline(status: Mapping[str, Any]) -> str:
    """One sentence: is capture on, where, and why not."""
    remaining = pause_remaining_minutes(status)
    if status.get("reason") == "paused" and remaining is not None:
        until = clock_time(status["paused_until_ms"])
        unit = "minute" if remaining == 1 else "minutes"
        return f"Paused for {remaining} more {unit} (until {until})."
    if status.get("capturing"):
        app = status.get("current_app")
        if isinstance(app, dict):
            if app.get("allowed"):
                return f"Capturing in {app.get('name')} (allowed)."
            return f"Capture is on, but not in {app.get('name')}: it is not an allow-listed app."
        return "Capturing in allow-listed apps."
    return f"Not capturing: {status.get('reason_text') or status.get('reason')}."


def status_lines(status: Mapping[str, Any]) -> list[str]:
    """Everything ``overt status`` prints."""
    lines = [headline(status)]
    if status.get("problem"):
        lines.append(f"Problem: {status['problem']}")
    if status.get("consent_needed"):
        lines.append("Your answer to the capture notice is needed: run `overt consent`.")
    policy = status.get("policy")
    if isinstance(policy, dict):
        who = f" from {policy['organisation']}" if policy.get("organisation") else ""
        until = f", valid until {_day(policy['expires'])}" if policy.get("expires") else ""
        lines.append(f"Policy: version {policy.get('version')}{who}{until}.")
    else:
        lines.append("Policy: none in force.")
    if status.get("reason") != "paused":
        lines.append(f"Pause: up to {status.get('pause_max_minutes')} minutes with `overt pause`.")
    exemptions = status.get("exemptions")
    if exemptions is None:
        lines.append("Exemptions: not reported by this agent.")
    elif not exemptions:
        lines.append("Exemptions: none.")
    else:
        granted = "; ".join(f"{e['category']} until {_day(e.get('expires'))}" for e in exemptions)
        lines.append(f"Exemptions: {granted}.")
    lines.append(_spool_line(status.get("spool")))
    lines.extend(_upload_lines(status.get("upload")))
    return lines


def _spool_line(spool: Any) -> str:
    if not isinstance(spool, dict):
        return "Spool: not reported by this agent."
    parts = [f"{spool['held']} held for review", f"{spool['ready']} ready to upload"]
    if spool.get("dead"):
        parts.append(f"{spool['dead']} refused by the collector")
    if spool.get("quarantined"):
        parts.append(f"{spool['quarantined']} quarantined")
    return (
        f"Spool: {_plural(spool['batches'], 'batch', 'batches')}, "
        f"{size(spool['bytes'])} of {size(spool['budget'])} ({', '.join(parts)})."
    )


def _upload_lines(upload: Any) -> list[str]:
    if not isinstance(upload, dict):
        return ["Upload: not reported by this agent."]
    line = f"Upload: {upload['state']}"
    if upload.get("why"):
        line += f" ({upload['why']})"
    if isinstance(upload.get("last_success_ms"), int):
        line += f"; last upload at {local_moment(upload['last_success_ms'])}"
    return [
        line + ".",
        f"Today: {size(upload['today_bytes'])} uploaded of the "
        f"{size(upload['daily_budget'])} daily budget.",
    ]


_TITLE_WORDS = {"keep": "kept", "mask": "kept, with matches masked", "drop": "not kept"}


def notice_lines(notice: Mapping[str, Any]) -> list[str]:
    """The capture notice (``consent.show``'s ``notice``) in plain words."""
    policy = notice["policy"]
    lines = [
        f"Capture notice — {notice['organisation']}, policy version {policy['version']} "
        f"(valid until {_day(policy['expires'])})",
        f"Contact: {notice['contact']}",
        f"Purpose: {notice['purpose']}",
        "",
        "Captured apps (nothing is recorded outside these):",
    ]
    for app in notice["apps"]:
        lines.append(f"  - {app['name']}")
        if app["actions_only"]:
            lines.append(
                "      actions only: your own clicks and keys; no titles, no screenshots, "
                "nothing received from others"
            )
        lines.append(f"      keystrokes: {app['keystrokes_words']}")
        lines.append(f"      mouse: {'clicks, scrolls, movement paths' if app['mouse'] else 'no'}")
        shots = app["screenshots"]
        lines.append(f"      screenshots: {shots['words'] if shots else 'no'}")
        if not app["actions_only"]:
            lines.append(f"      window titles: {_TITLE_WORDS.get(app['titles'], app['titles'])}")
        for rule in app["title_rules"]:
            lines.append(f"      title rule: /{rule['pattern']}/ → {rule['words']}")
    if notice["never_captured"]:
        lines.append("Never captured: " + ", ".join(notice["never_captured"]) + ".")
    redaction = notice["redaction"]
    redacted = ", ".join(redaction["builtin"]) or "nothing"
    if redaction["custom"]:
        redacted += "; custom: " + ", ".join(redaction["custom"])
    upload = notice["upload"]
    conditions = [
        c
        for c, on in (
            ("on AC power", upload["ac_only"]),
            ("on unmetered networks", upload["unmetered_only"]),
        )
        if on
    ]
    lines += [
        "",
        f"Typed text is redacted before it is stored: {redacted}.",
        f"Batches wait {notice['review_window_minutes']} minutes on this machine before upload; "
        "you can discard them meanwhile (`overt discard MIN`).",
        f"Upload: at most {size(upload['daily_bytes'])} a day"
        + (f", only {' and '.join(conditions)}." if conditions else "."),
        f"Kept for {notice['retention_days']} days; readable only by: "
        + "; ".join(notice["readers"])
        + ".",
        "On battery: "
        + ("screenshots continue." if notice["on_battery"]["screenshots"] else "no screenshots."),
        f"You can pause capture at any time for up to {notice['pause_max_minutes']} minutes.",
        "",
        "Exemptions you can request:",
    ]
    for entry in notice["exemptions"]["categories"]:
        note = "" if entry["grantable"] else " (no admin may grant this yet)"
        lines.append(f"  - {entry['category']}: {entry['words']} → {entry['effect']}{note}")
    lines.append(f"  {notice['exemptions']['how']}")
    return lines


def consent_lines(shown: Mapping[str, Any]) -> list[str]:
    """The notice, plus what changed since the last acceptance."""
    lines = notice_lines(shown["notice"])
    previous = shown.get("previous")
    widening = shown.get("widening")
    if isinstance(widening, list) and widening:
        since = previous["policy_version"] if isinstance(previous, dict) else "?"
        lines += ["", f"Since you last agreed (policy version {since}), this policy captures:"]
        lines += [f"  - {change}" for change in widening]
    if isinstance(previous, dict):
        answer = "accepted" if previous["accepted"] else "declined"
        lines += [
            "",
            f"Your answer on record: {answer} (policy version {previous['policy_version']}, "
            f"{local_moment(previous['at_ms'])}).",
        ]
    return lines


def ledger_lines(ledger: Mapping[str, Any], days: int) -> list[str]:
    """The ledger as a table of batches and the daily upload totals."""
    batches = ledger["batches"]
    if not batches:
        lines = [f"No batches in the last {_plural(days, 'day')}."]
    else:
        rows = [("SEQ", "FROM", "TO", "APPS", "SIZE", "STATE", "UPLOADED", "COUNTS")]
        for b in batches:
            uploaded = local_moment(b["uploaded_at_ms"]) if b.get("uploaded_at_ms") else "-"
            if b.get("destination") and uploaded != "-":
                uploaded += f" to {b['destination']}"
            counts = ", ".join(f"{k} {v}" for k, v in sorted(b["counts"].items()) if v)
            rows.append(
                (
                    str(b["seq"]),
                    local_moment(b["start_ms"]),
                    clock_time(b["end_ms"]),
                    ", ".join(b["apps"]) or "-",
                    size(b["bytes"]),
                    b["state"],
                    uploaded,
                    counts or "-",
                )
            )
        lines = _table(rows)
        total = sum(b["bytes"] for b in batches)
        count = _plural(len(batches), "batch", "batches")
        lines.append(f"{count}, {size(total)} in the last {_plural(days, 'day')}.")
    for day in ledger["daily"]:
        lines.append(
            f"{day['day']}: {size(day['bytes_uploaded'])} uploaded of the "
            f"{size(day['budget'])} daily budget."
        )
    return lines


def exemption_lines(requests: Sequence[Mapping[str, Any]]) -> list[str]:
    if not requests:
        return ["No exemption requests."]
    rows = [("REQUEST", "CATEGORY", "DAYS", "STATUS", "DECIDED", "NOTE")]
    for r in requests:
        note = r.get("decision_reason") or ""
        if r.get("grant_expires"):
            note = (note + "; " if note else "") + f"until {_day(r['grant_expires'])}"
        decided = _day(r["decided_at"]) if r.get("decided_at") else "-"
        rows.append(
            (r["request_id"], r["category"], str(r["duration_days"]), r["status"], decided, note)
        )
    return _table(rows)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


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
        help="print the agent's raw answer as JSON",
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
    except ControlError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # An answer of another shape (an agent of another version): say so
        # rather than show a traceback; --json still shows it as it is.
        print(
            f"{prog}: the agent's answer is not what this version of overt expects "
            f"({type(exc).__name__} {exc}); --json shows it as it is",
            file=sys.stderr,
        )
        return 1


def _no_arguments(_parser: argparse.ArgumentParser) -> None:
    return None


# ------------------------------------------------------------------ commands


def status(argv: Sequence[str], prog: str = "overt status") -> int:
    def act(args: argparse.Namespace, client: ControlClient) -> int:
        result = client.status()
        if args.json:
            _print_json(result)
        else:
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
        result = client.pause(args.minutes)
        if args.json:
            _print_json(result)
            return 0
        maximum = result.get("pause_max_minutes")
        if args.minutes is not None and isinstance(maximum, int) and args.minutes > maximum:
            print(f"The policy allows pauses of at most {maximum} minutes.")
        remaining = pause_remaining_minutes(result)
        if result.get("reason") == "paused" and remaining is not None:
            print(
                f"Paused for {_plural(remaining, 'minute')} (until "
                f"{clock_time(result['paused_until_ms'])}); capture resumes by itself."
            )
        else:
            print(headline(result))
        return 0

    return _run(argv, prog, "Pause capture; it resumes by itself.", add, act)


def resume(argv: Sequence[str], prog: str = "overt resume") -> int:
    def act(args: argparse.Namespace, client: ControlClient) -> int:
        result = client.resume()
        if args.json:
            _print_json(result)
        else:
            print("Capture is no longer paused.")
            print(headline(result))
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
        result = client.discard(args.minutes)
        if args.json:
            _print_json(result)
            return 0
        print(
            f"Discarded {_plural(result['batches_deleted'], 'batch', 'batches')}"
            f" and {_plural(result['events_dropped'], 'buffered event')} from the last "
            f"{_plural(args.minutes, 'minute')}."
        )
        span = result.get("erasure_range")
        if result.get("erasure_requested") and isinstance(span, list) and len(span) == 2:
            print(
                "Part of it had already been uploaded: the collector was asked to erase "
                f"{local_moment(span[0])} to {clock_time(span[1])}."
            )
        return 0

    return _run(argv, prog, "Delete what was captured in the last MIN minutes.", add, act)


def _ask(prompt: str) -> bool | None:
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
        shown = client.consent_show()
        answering = args.accept or args.decline
        if not args.json:
            _print_lines(consent_lines(shown))
            print()
        elif not answering:
            _print_json(shown)
            return 0
        if args.accept:
            accepted: bool | None = True
        elif args.decline:
            accepted = False
        elif sys.stdin.isatty():
            accepted = _ask("Do you agree to capture under this policy? [y/n] ")
            if accepted is None:
                print(f"{prog}: no answer given; nothing was recorded", file=sys.stderr)
                return 1
        else:
            print("To answer: `overt consent --accept` or `overt consent --decline`.")
            return 0
        version = shown["policy_version"]
        answer = client.consent_accept if accepted else client.consent_decline
        result = answer(version)
        if args.json:
            _print_json(result)
        else:
            print("Consent recorded: " + ("accepted." if accepted else "declined."))
            print(headline(result))
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
            if not reason:
                raise _Usage("--reason must say why")
            if len(reason) > MAX_REASON_CHARS:
                raise _Usage(f"--reason must be at most {MAX_REASON_CHARS} characters")
            result = client.exemption_request(args.category, reason, args.days)
            if args.json:
                _print_json(result)
            else:
                print(
                    f"Exemption request {result['request_id']} sent ({result['status']}). "
                    "An admin reviews it; `overt exemption list` shows the answer."
                )
            return 0
        result = client.exemption_list()
        if args.json:
            _print_json(result)
        else:
            _print_lines(exemption_lines(result["requests"]))
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
        result = client.ledger(args.days)
        if args.json:
            _print_json(result)
        else:
            _print_lines(ledger_lines(result, args.days))
        return 0

    return _run(
        argv, prog, "Every batch captured on this machine, and what became of it.", add, act
    )
