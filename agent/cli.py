"""``overt agent ...``: run the capture agent, give or refuse consent, inspect batches.

This module is an entry point: it reads arguments, the environment and the
terminal, configures logging, builds one :class:`~agent.config.AgentConfig`
and hands it to :class:`~agent.app.Agent`. Until the tray and the control API
exist, consent is given here, on the terminal, from a notice generated from
the signed policy.

Exit status: 0 on success; 1 when the agent cannot run (no display, no usable
policy, unreadable state) with a one-line reason; 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from agent.config import AgentConfig, default_state_dir
from agent.local_state import LocalState, LocalStateError
from agent.pipeline.batch import BatchHeader, decode_body
from agent.pipeline.consent import ConsentRecord, capture_surface, surface_widening
from agent.pipeline.records import PipelineError
from agent.policy_source import load_policy
from agent.sources.errors import SourceError
from policies.errors import PolicyError
from policies.keys import load_public_key, public_key_model
from policies.model import SignerSet
from policies.summary import describe

log = logging.getLogger(__name__)


class _UsageError(Exception):
    """Arguments that parse but make no sense together (exit 2)."""


class _NoPolicyError(Exception):
    """No usable policy: the reason is already in words (exit 1)."""


def _add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="SIGNED.json",
        help="a signed policy file to accept (default: the last good policy in --state)",
    )
    parser.add_argument(
        "--trust",
        action="append",
        required=True,
        metavar="KEY.pub",
        help="a pinned policy signing public key (repeatable)",
    )
    parser.add_argument("--threshold", type=int, default=1, metavar="N")
    parser.add_argument("--tenant", required=True, help="this device's tenant")
    parser.add_argument("--device-group", required=True, help="this device's group")
    parser.add_argument(
        "--state",
        type=Path,
        default=None,
        metavar="DIR",
        help="the agent's state directory (default: $XDG_STATE_HOME/overt)",
    )


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="The Overt capture agent.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="capture in the allow-listed apps until stopped (Ctrl+C)",
        description="Capture in the policy's allow-listed apps, after consent, writing "
        "batches to --sink DIR. Stops on Ctrl+C or SIGTERM and writes what it holds.",
    )
    _add_policy_arguments(run)
    run.add_argument("--sink", type=Path, required=True, metavar="DIR", help="batch directory")
    run.add_argument(
        "--minutes", type=float, default=None, help="stop by itself after this many minutes"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log what the agent does")

    consent = commands.add_parser(
        "consent",
        help="read the capture notice of the policy and accept or decline it",
        description="Show what the policy captures, in plain words, and record your answer. "
        "Without --accept or --decline the question is asked on the terminal.",
    )
    _add_policy_arguments(consent)
    answer = consent.add_mutually_exclusive_group()
    answer.add_argument("--accept", action="store_true", help="accept without asking")
    answer.add_argument("--decline", action="store_true", help="decline without asking")

    batches = commands.add_parser(
        "batches",
        help="list the batches in a sink directory (add --records to see their content)",
    )
    batches.add_argument("directory", type=Path, metavar="DIR")
    batches.add_argument("--records", action="store_true", help="print every record")
    return parser


def _config(args: argparse.Namespace) -> AgentConfig:
    keys = [public_key_model(load_public_key(path)) for path in args.trust]
    if len({k.keyid for k in keys}) != len(keys):
        raise _UsageError("the same --trust key was given twice")
    if not 1 <= args.threshold <= len(keys):
        raise _UsageError("--threshold must be between 1 and the number of --trust keys")
    return AgentConfig(
        trusted=SignerSet(keys=tuple(keys), threshold=args.threshold),
        tenant=args.tenant,
        device_group=args.device_group,
        state_dir=args.state if args.state is not None else default_state_dir(),
        policy_file=args.policy,
    )


def _consent(args: argparse.Namespace) -> int:
    config = _config(args)
    local = LocalState(config.state_dir)
    now = time.time()
    loaded = load_policy(local.trust, config.trusted, config.device, now, config.policy_file)
    if loaded.policy is None:
        raise _NoPolicyError(loaded.problem or "no policy has been installed")
    policy = loaded.policy
    previous = local.consent()
    print(f"Capture notice — policy version {policy.version}\n")
    print(describe(policy))
    if previous is not None and previous.accepted:
        wider = surface_widening(previous.surface, capture_surface(policy))
        if wider:
            print(f"\nSince you last agreed (policy version {previous.policy_version}), it:")
            for line in wider:
                print(f"  - {line}")
    print(
        "\nYou can pause capture at any time for up to "
        f"{policy.pause.max_minutes} minutes, discard recent minutes before upload, "
        "and request an exemption."
    )
    if args.accept:
        accepted = True
    elif args.decline:
        accepted = False
    else:
        if not sys.stdin.isatty():
            raise _UsageError("no terminal to ask on: pass --accept or --decline")
        reply = input("\nDo you agree to capture under this policy? [y/N] ")
        accepted = reply.strip().lower() in {"y", "yes"}
    record = (ConsentRecord.accept if accepted else ConsentRecord.decline)(policy, now)
    local.save_consent(record)
    print("Consent recorded: " + ("accepted." if accepted else "declined; nothing is captured."))
    return 0


def _run(args: argparse.Namespace) -> int:
    from agent.app import Agent
    from agent.sinks.directory import DirectorySink
    from agent.sources.input import select_input_hooks
    from agent.sources.screen import select_screen_grabber
    from agent.sources.window import select_window_probe

    config = _config(args)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    probe = select_window_probe()
    hooks = select_input_hooks(config.clock)
    grabber = select_screen_grabber()
    agent = Agent(config, probe=probe, hooks=hooks, grabber=grabber, sink=DirectorySink(args.sink))
    agent.start()
    status = agent.status()
    if status.capturing:
        print(f"capturing under policy version {status.policy_version}; Ctrl+C stops")
    else:
        print(
            f"not capturing: {status.reason.value}"
            + (f" ({status.problem})" if status.problem else "")
        )
    deadline = None if args.minutes is None else time.monotonic() + args.minutes * 60
    try:
        while not stop.wait(1.0):
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        agent.stop()
        probe.close()
        grabber.close()
    final = agent.status()
    print(
        f"stopped: {final.batches_written} batches written to {args.sink}, "
        f"{final.events_seen} events seen, {final.events_lost} lost"
    )
    return 0


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _batches(args: argparse.Namespace) -> int:
    from agent.sinks.directory import BODY_SUFFIX, HEADER_SUFFIX

    if not args.directory.is_dir():
        raise _UsageError(f"{args.directory} is not a directory")
    headers = sorted(args.directory.glob("*" + HEADER_SUFFIX))
    for path in headers:
        header = BatchHeader.from_json(path.read_bytes())
        counts = ", ".join(
            f"{f.name} {getattr(header.counts, f.name)}"
            for f in fields(header.counts)
            if getattr(header.counts, f.name)
        )
        print(
            f"#{header.seq} {_when(header.start_ms)} to {_when(header.end_ms)} UTC, "
            f"{header.body_size} bytes, apps: {', '.join(header.app_ids) or '-'}; {counts}"
        )
        if args.records:
            body = path.with_name(path.name[: -len(HEADER_SUFFIX)] + BODY_SUFFIX).read_bytes()
            records, images = decode_body(body)
            for record in records:
                print(f"    {record}")
            for image_id, blob in images.items():
                print(f"    image {image_id}: {len(blob)} bytes")
    print(f"{len(headers)} batch(es) in {args.directory}")
    return 0


_HANDLERS = {"run": _run, "consent": _consent, "batches": _batches}


def main(argv: Sequence[str], prog: str = "overt agent") -> int:
    parser = _parser(prog)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    else:
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    command = f"{prog} {args.command}"
    try:
        return _HANDLERS[args.command](args)
    except _UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(f"{command}: error ({exc.label}): {exc}", file=sys.stderr)
        return 1
    except (_NoPolicyError, SourceError, LocalStateError, PipelineError, OSError) as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 1
