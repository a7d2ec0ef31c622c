"""Starting the agent for the tray, and saying what became of it (no Qt).

``overt tray`` starts an agent when none answers on the control socket.
:class:`AgentLauncher` owns that one child process: it starts it
(``python -m overt agent run <the arguments the user passed>``) in its own
session, so that a crash of the tray leaves capture state as it was, stops
it when the tray quits, and describes it while no agent answers: still
starting, exited with a status, or started but not answering. It never
starts a second agent while its first is alive.

The process factory and the clock are injected, so the rules are tested
without starting anything or waiting.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ui.errors import LaunchError
from ui.presentation import Unreachable

log = logging.getLogger(__name__)

#: How long a started agent may take to answer before the tray says it does not.
STARTUP_GRACE_S = 30.0


class Process(Protocol):
    pid: int

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


@dataclass(frozen=True, slots=True)
class AgentCommand:
    """The command line that starts the agent."""

    argv: tuple[str, ...]

    @classmethod
    def overt_agent_run(cls, agent_args: Sequence[str], python: str | None = None) -> AgentCommand:
        """``<python> -m overt agent run <agent_args>``."""
        return cls((python or sys.executable, "-m", "overt", "agent", "run", *agent_args))


def _popen(argv: Sequence[str]) -> Process:
    # Its own session: a signal to the tray's process group (Ctrl+C in the
    # terminal, a crash) does not reach the agent. stderr is inherited, so the
    # agent's complaints land where the tray's do (terminal or journal).
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )


class AgentLauncher:
    """Starts and stops the one agent process this tray is responsible for."""

    def __init__(
        self,
        command: AgentCommand,
        *,
        spawn: Callable[[Sequence[str]], Process] = _popen,
        clock: Callable[[], float] = time.monotonic,
        startup_grace_s: float = STARTUP_GRACE_S,
    ) -> None:
        self.command = command
        self._spawn = spawn
        self._clock = clock
        self._grace = startup_grace_s
        self._process: Process | None = None
        self._started_at = 0.0

    @property
    def process(self) -> Process | None:
        return self._process

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the agent unless the one started before is still alive."""
        if self.alive:
            return
        try:
            self._process = self._spawn(self.command.argv)
        except OSError as exc:
            raise LaunchError(f"cannot start the agent: {exc.strerror or exc}") from exc
        self._started_at = self._clock()
        log.info("started the agent, pid %d", self._process.pid)

    def describe(self, why: str) -> Unreachable:
        """What to show while no agent answers; ``why`` is the client's reason."""
        process = self._process
        if process is None:
            return Unreachable(why=why, can_start=True)
        code = process.poll()
        if code is not None:
            return Unreachable(why=f"The agent stopped (exit status {code}).", can_start=True)
        if self._clock() - self._started_at < self._grace:
            return Unreachable(why=why, starting=True, can_start=True)
        return Unreachable(
            why=f"The agent was started (pid {process.pid}) but does not answer.",
            can_start=True,
        )

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the agent this launcher started (TERM, then KILL); its exit status."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                return process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the agent did not stop in %.0f s; killing it", timeout)
                process.kill()
        return process.wait(timeout)
