"""Starting and stopping the agent the tray is responsible for."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import pytest

from ui.errors import LaunchError
from ui.launcher import AgentCommand, AgentLauncher


class FakeProcess:
    pid = 1234

    def __init__(self, stubborn: bool = False) -> None:
        self.code: int | None = None
        self.stubborn = stubborn
        self.signals: list[str] = []

    def poll(self) -> int | None:
        return self.code

    def terminate(self) -> None:
        self.signals.append("TERM")
        if not self.stubborn:
            self.code = -15

    def kill(self) -> None:
        self.signals.append("KILL")
        self.code = -9

    def wait(self, timeout: float | None = None) -> int:
        if self.code is None:
            raise subprocess.TimeoutExpired("agent", timeout or 0)
        return self.code


class Spawner:
    def __init__(self, process: FakeProcess | None = None) -> None:
        self.argvs: list[tuple[str, ...]] = []
        self.process = process or FakeProcess()

    def __call__(self, argv: Sequence[str]) -> FakeProcess:
        self.argvs.append(tuple(argv))
        return self.process


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_command_is_overt_agent_run_with_the_users_arguments() -> None:
    command = AgentCommand.overt_agent_run(["--policy", "p.json", "--trust", "k.pub"], "py")
    assert command.argv == ("py", "-m", "overt", "agent", "run", "--policy", "p.json",
                            "--trust", "k.pub")  # fmt: skip
    assert AgentCommand.overt_agent_run([]).argv[0] == sys.executable


def test_before_starting_it_offers_to_start() -> None:
    launcher = AgentLauncher(AgentCommand(("x",)), spawn=Spawner())
    state = launcher.describe("no socket")
    assert (state.why, state.starting, state.can_start) == ("no socket", False, True)


def test_a_fresh_agent_is_starting_then_not_answering_after_the_grace() -> None:
    clock = Clock()
    launcher = AgentLauncher(AgentCommand(("x",)), spawn=Spawner(), clock=clock,
                             startup_grace_s=30)  # fmt: skip
    launcher.start()
    assert launcher.describe("no socket").starting
    clock.now += 31
    state = launcher.describe("no socket")
    assert not state.starting
    assert state.why == "The agent was started (pid 1234) but does not answer."


def test_an_agent_that_exited_says_its_status() -> None:
    spawner = Spawner()
    launcher = AgentLauncher(AgentCommand(("x",)), spawn=spawner)
    launcher.start()
    spawner.process.code = 2
    assert launcher.describe("no socket").why == "The agent stopped (exit status 2)."
    assert not launcher.alive


def test_start_never_makes_a_second_agent_while_the_first_lives() -> None:
    spawner = Spawner()
    launcher = AgentLauncher(AgentCommand(("x",)), spawn=spawner)
    launcher.start()
    launcher.start()
    assert len(spawner.argvs) == 1
    spawner.process.code = 1
    launcher.start()
    assert len(spawner.argvs) == 2


def test_a_missing_program_is_a_launch_error() -> None:
    def spawn(argv: Sequence[str]) -> FakeProcess:
        raise FileNotFoundError(2, "No such file or directory")

    launcher = AgentLauncher(AgentCommand(("/nope",)), spawn=spawn)
    with pytest.raises(LaunchError, match="cannot start the agent: No such file or directory"):
        launcher.start()
    assert launcher.process is None


def test_stop_terminates_then_kills_a_stubborn_agent() -> None:
    process = FakeProcess(stubborn=True)
    launcher = AgentLauncher(AgentCommand(("x",)), spawn=Spawner(process))
    launcher.start()
    assert launcher.stop(timeout=0.01) == -9
    assert process.signals == ["TERM", "KILL"]
    assert launcher.stop() is None  # nothing left to stop


def test_a_real_process_is_started_in_its_own_session_and_stopped() -> None:
    launcher = AgentLauncher(AgentCommand((sys.executable, "-c", "import time; time.sleep(60)")))
    launcher.start()
    process = launcher.process
    assert isinstance(process, subprocess.Popen)
    try:
        assert launcher.alive
        import os

        assert os.getsid(process.pid) == process.pid  # a session of its own
    finally:
        code = launcher.stop(timeout=5)
    assert code == -15
    assert not launcher.alive
