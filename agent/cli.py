"""``overt agent ...``: run the capture agent, enroll it, give or refuse consent,
inspect batches.

This module is an entry point: it reads arguments, the environment and the
terminal, configures logging, builds one :class:`~agent.config.AgentConfig`
and hands it to :class:`~agent.service.AgentService` (capture, sealing, the
spool, upload, policy sync and the control socket). Consent can be given here
on the terminal (``overt agent consent``), or through the control API while
the agent runs (``overt consent``, the tray).

``overt agent batches`` reads a development sink directory; the command
itself is ``agent.cli_batches``, this module only parses its arguments.
The state directory is opened once per command and passed down.

Exit status: 0 on success; 1 when the agent cannot run (no display, no usable
policy, unreadable state), or a batch or frame cannot be read, with a
one-line reason; 2 on a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from agent.cli_batches import BATCHES_EPILOG, UnreadableError, run_batches
from agent.config import AgentConfig, default_state_dir
from agent.control import ControlError
from agent.local_state import LocalState, LocalStateError
from agent.pipeline.consent import ConsentRecord, capture_surface, surface_widening
from agent.policy_source import load_policy
from agent.remote import RemoteError
from agent.sinks.base import SinkError
from agent.sources.errors import SourceError
from overt.wire.errors import FormatError
from policies.cli_args import UsageError, trusted_signers
from policies.errors import PolicyError
from policies.summary import describe

log = logging.getLogger(__name__)


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
    parser.add_argument(
        "--tenant", help="this device's tenant (default: the one it is enrolled in)"
    )
    parser.add_argument(
        "--device-group", help="this device's group (default: the one it is enrolled in)"
    )
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
        description="Capture in the policy's allow-listed apps, after consent. Batches are "
        "sealed to the dataset key and kept in the spool until uploaded to the collector "
        "this device is enrolled with. Serves the control socket that the tray and "
        "`overt status|pause|...` use. Stops on Ctrl+C or SIGTERM and spools what it holds.",
    )
    _add_policy_arguments(run)
    run.add_argument(
        "--sink",
        type=Path,
        metavar="DIR",
        help="development only: write batches unsealed to DIR instead of the spool",
    )
    run.add_argument(
        "--batch-seconds",
        type=float,
        default=None,
        metavar="S",
        help="close a batch after S seconds (default 60; shorter for demos and tests)",
    )
    run.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="the control socket (default: $XDG_RUNTIME_DIR/overt/agent.sock)",
    )
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

    enroll = commands.add_parser(
        "enroll",
        help="register this device with a collector, using a one-time token from an admin",
    )
    enroll.add_argument("--collector", required=True, metavar="URL")
    enroll.add_argument("--token", required=True, metavar="TOKEN")
    enroll.add_argument("--state", type=Path, default=None, metavar="DIR")

    batches = commands.add_parser(
        "batches",
        help="list the batches in a sink directory (add --records to see their content)",
        description="List the batches that `overt agent run --sink DIR` wrote, in sequence "
        "order. A batch that cannot be read is named on stderr, the others are still listed, "
        "and the exit status is 1.",
        epilog=BATCHES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batches.add_argument("directory", type=Path, metavar="DIR")
    batches.add_argument("--records", action="store_true", help="print every record")
    batches.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: each batch's header, then each of its records",
    )
    batches.add_argument(
        "--frames",
        type=Path,
        metavar="OUT",
        help="write every screenshot, reassembled, as a PNG into OUT",
    )
    batches.set_defaults(prog=batches.prog)
    return parser


def _state_dir(args: argparse.Namespace) -> Path:
    return args.state if args.state is not None else default_state_dir()


def _config(args: argparse.Namespace, local: LocalState) -> AgentConfig:
    trusted = trusted_signers(args.trust, args.threshold)
    tenant, group = args.tenant, args.device_group
    if tenant is None or group is None:
        enrollment = local.enrollment()
        if enrollment is None:
            raise UsageError(
                "this device is not enrolled: give --tenant and --device-group, "
                "or enroll it first (overt agent enroll)"
            )
        tenant = tenant or enrollment.tenant
        group = group or enrollment.group
    return AgentConfig(
        trusted=trusted,
        tenant=tenant,
        device_group=group,
        state_dir=local.directory,
        policy_file=args.policy,
    )


def _consent(args: argparse.Namespace) -> int:
    local = LocalState(_state_dir(args))
    config = _config(args, local)
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
            raise UsageError("no terminal to ask on: pass --accept or --decline")
        reply = input("\nDo you agree to capture under this policy? [y/N] ")
        accepted = reply.strip().lower() in {"y", "yes"}
    record = (ConsentRecord.accept if accepted else ConsentRecord.decline)(policy, now)
    local.save_consent(record)
    print("Consent recorded: " + ("accepted." if accepted else "declined; nothing is captured."))
    return 0


def _enroll(args: argparse.Namespace) -> int:
    import httpx

    from agent.remote import enroll

    local = LocalState(_state_dir(args))
    with httpx.Client(base_url=args.collector, timeout=30.0) as client:
        enrollment = enroll(client, local, args.token, time.time)
    print(
        f"enrolled device {enrollment.device_id} with {enrollment.collector} "
        f"(tenant {enrollment.tenant}, group {enrollment.group})"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from agent.control import default_socket_path
    from agent.service import AgentService
    from agent.sinks.directory import DirectorySink
    from agent.sources.input import select_input_hooks
    from agent.sources.power import select_conditions_probe
    from agent.sources.screen import select_screen_grabber
    from agent.sources.window import select_window_probe

    local = LocalState(_state_dir(args))
    config = _config(args, local)
    if args.batch_seconds is not None:
        if not 1 <= args.batch_seconds <= 3600:
            raise UsageError("--batch-seconds must be between 1 and 3600")
        config = dataclasses.replace(config, batch_max_age_seconds=args.batch_seconds)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    probe = select_window_probe()
    hooks = select_input_hooks(config.clock)
    grabber = select_screen_grabber()
    service = AgentService(
        config,
        probe=probe,
        hooks=hooks,
        grabber=grabber,
        conditions=select_conditions_probe(),
        socket_path=args.socket if args.socket is not None else default_socket_path(),
        sink=None if args.sink is None else DirectorySink(args.sink),
        local=local,
    )
    try:
        service.start()
    except BaseException:
        probe.close()
        grabber.close()
        raise
    agent = service.agent
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
        service.stop()
        probe.close()
        grabber.close()
    final = agent.status()
    where = args.sink if args.sink is not None else "the spool"
    print(
        f"stopped: {final.batches_written} batches written to {where}, "
        f"{final.events_seen} events seen, {final.events_lost} lost"
    )
    return 0


_HANDLERS = {"run": _run, "consent": _consent, "enroll": _enroll, "batches": run_batches}


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
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(f"{command}: error ({exc.label}): {exc}", file=sys.stderr)
        return 1
    except (
        _NoPolicyError,
        UnreadableError,
        SourceError,
        LocalStateError,
        FormatError,
        SinkError,
        RemoteError,
        ControlError,
        OSError,
    ) as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 1
