"""``overt tray``: the tray icon process, and the agent it starts when none runs.

This is the tray's entry point. It owns the order of things at start and
stop, and nothing else:

1. a Qt binding that would crash the tray within the hour (see
   :mod:`ui.qt_binding`) is refused with exit status 1, before an agent is
   started;
2. one tray per control socket (a ``QLockFile`` next to the socket; a second
   ``overt tray`` says so and exits 0, which makes the two autostart
   mechanisms of Linux harmless together);
3. if no agent answers on the control socket, start one —
   ``python -m overt agent run <everything after -->`` — unless
   ``--no-agent``; an agent that already listens is only connected to. A
   ``--socket`` given to the tray is passed on to the agent it starts (unless
   the agent's arguments name one), so that both use the same socket;
4. the Qt application and the :class:`~ui.tray.TrayController`;
5. on Quit, SIGTERM or SIGINT: stop polling, close the windows and stop the
   agent *this tray started* (so quitting the tray never leaves capture
   running with no icon to show it). An agent the tray found running is left
   alone. A tray that crashes leaves its agent running: capture state never
   depends on the tray being alive.

Usage::

    overt tray [--socket PATH] [--no-agent] [--poll SECONDS] [--menu-map FILE] [-v]
               [-- AGENT-RUN-ARGS…]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrayOptions:
    """Everything ``overt tray`` was asked to do, parsed once."""

    socket_path: Path | None
    start_agent: bool
    poll_interval_ms: int
    verbose: bool
    agent_args: tuple[str, ...] = field(default=())
    menu_map: Path | None = None


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="The Overt tray icon: whether capture is on, pause, discard, the "
        "capture notice, the ledger and exemption requests. Starts the agent "
        "(`overt agent run` with the arguments after --) if none is running.",
        epilog="Example: overt tray -- --trust it-1.pub --tenant example-corp "
        "--device-group office --sink batches",
    )
    parser.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="the agent's control socket (default: $XDG_RUNTIME_DIR/overt/agent.sock)",
    )
    parser.add_argument(
        "--no-agent",
        action="store_true",
        help="never start an agent; only show what a running one does",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often to ask the agent for its status (default 2)",
    )
    parser.add_argument(
        "--menu-map",
        type=Path,
        metavar="FILE",
        help="each time the menu opens, write where its entries are on the screen to FILE "
        "(JSON; for UI automation)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the tray does")
    return parser


def parse_options(argv: Sequence[str], prog: str = "overt tray") -> TrayOptions:
    """Parse ``argv``; everything after the first ``--`` goes to the agent.

    Raises ``SystemExit(2)`` on a usage error (argparse's way).
    """
    args = list(argv)
    agent_args: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, agent_args = args[:cut], args[cut + 1 :]
    parser = _parser(prog)
    ns = parser.parse_args(args)
    if not 0.2 <= ns.poll <= 60:
        parser.error("--poll must be between 0.2 and 60 seconds")
    return TrayOptions(
        socket_path=ns.socket,
        start_agent=not ns.no_agent,
        poll_interval_ms=int(ns.poll * 1000),
        verbose=ns.verbose,
        agent_args=tuple(agent_args),
        menu_map=ns.menu_map,
    )


def agent_arguments(options: TrayOptions) -> tuple[str, ...]:
    """The arguments for ``overt agent run``: the user's, plus the tray's socket."""
    args = options.agent_args
    names_socket = any(a == "--socket" or a.startswith("--socket=") for a in args)
    if options.socket_path is None or names_socket:
        return args
    return (*args, "--socket", os.fspath(options.socket_path))


def missing_display(env: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """Why Qt would find no screen here, or None. Qt itself aborts the process
    on a missing display; saying so first is kinder and starts no agent."""
    if not platform.startswith("linux") or env.get("QT_QPA_PLATFORM"):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return "no display: the tray needs a desktop session (set DISPLAY)"


def main(argv: Sequence[str] | None = None, prog: str = "overt tray") -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv, prog)
    problem = missing_display(os.environ)
    if problem is not None:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=logging.INFO if options.verbose else logging.WARNING,
        format="overt tray: %(levelname)s %(name)s: %(message)s",
    )
    # Imported here: `overt tray --help` and option errors need no Qt.
    from PySide6.QtCore import QLockFile, QTimer
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon

    from ui.agent_api import ControlAgentApi
    from ui.calls import ThreadRunner
    from ui.errors import AgentUnreachable, LaunchError, TrayError
    from ui.launcher import AgentCommand, AgentLauncher
    from ui.qt_binding import binding_fault
    from ui.tray import TrayConfig, TrayController

    fault = binding_fault()
    if fault is not None:
        print(f"{prog}: {fault}", file=sys.stderr)
        return 1

    api = ControlAgentApi(options.socket_path)
    socket_path = Path(api.socket_path)
    try:
        socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        print(f"{prog}: cannot create {socket_path.parent}: {exc.strerror}", file=sys.stderr)
        return 1
    lock = QLockFile(os.fspath(socket_path.with_name(socket_path.name + ".tray.lock")))
    if not lock.tryLock(200):
        print(f"{prog}: a tray for {socket_path} is already running", file=sys.stderr)
        return 0

    launcher = None
    if options.start_agent:
        launcher = AgentLauncher(AgentCommand.overt_agent_run(agent_arguments(options)))
        try:
            api.status()
            log.info("an agent is already listening; connecting to it")
        except AgentUnreachable:
            try:
                launcher.start()
            except LaunchError as exc:
                print(f"{prog}: {exc}", file=sys.stderr)
        except TrayError as exc:
            # It answers, if strangely: it is running, do not start another.
            log.warning("the agent answered the first status with %s", type(exc).__name__)

    app = QApplication.instance() or QApplication(["overt-tray"])
    assert isinstance(app, QApplication)
    app.setApplicationName("Overt")
    app.setQuitOnLastWindowClosed(False)
    if not QSystemTrayIcon.isSystemTrayAvailable():
        log.warning("no system tray yet; the icon appears when one starts")

    runner = ThreadRunner()
    config = TrayConfig(poll_interval_ms=options.poll_interval_ms, menu_map=options.menu_map)
    controller = TrayController(api, runner, config, launcher=launcher)
    controller.quit_requested.connect(app.quit)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: app.quit())
    # Python runs signal handlers only when it gets control; Qt's loop is C++.
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(200)

    controller.start()
    try:
        code = app.exec()
    finally:
        heartbeat.stop()
        controller.close()
        runner.close()
        if launcher is not None and launcher.alive:
            log.info("stopping the agent this tray started")
            launcher.stop()
        lock.unlock()
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
