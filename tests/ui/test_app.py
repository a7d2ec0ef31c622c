"""``overt tray``'s command line (the running tray is tested in tests/e2e/test_tray.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ui.qt_binding
from ui.app import agent_arguments, main, missing_display, parse_options
from ui.launcher import AgentLauncher


def test_arguments_after_the_double_dash_go_to_the_agent() -> None:
    options = parse_options(
        ["--socket", "/run/x.sock", "--", "--policy", "p.json", "--", "--trust", "k.pub"]
    )
    assert options.socket_path == Path("/run/x.sock")
    assert options.agent_args == ("--policy", "p.json", "--", "--trust", "k.pub")
    assert options.start_agent
    assert options.poll_interval_ms == 2000


def test_no_agent_and_poll() -> None:
    options = parse_options(["--no-agent", "--poll", "0.5"])
    assert not options.start_agent
    assert options.poll_interval_ms == 500
    assert options.agent_args == ()


@pytest.mark.parametrize("argv", [["--poll", "0"], ["--poll", "600"], ["--bogus"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_options(argv)
    assert exited.value.code == 2
    assert "usage: overt tray" in capsys.readouterr().err


def test_the_trays_socket_is_passed_to_the_agent_it_starts() -> None:
    options = parse_options(["--socket", "/run/x.sock", "--", "--trust", "k.pub"])
    assert agent_arguments(options) == ("--trust", "k.pub", "--socket", "/run/x.sock")


def test_a_socket_named_for_the_agent_is_left_as_it_is() -> None:
    for args in (["--socket", "/a.sock"], ["--socket=/a.sock"]):
        options = parse_options(["--socket", "/run/x.sock", "--", *args])
        assert agent_arguments(options) == tuple(args)
    assert agent_arguments(parse_options(["--", "--trust", "k"])) == ("--trust", "k")


def test_no_display_is_said_before_anything_starts() -> None:
    assert missing_display({}, "linux") is not None
    assert missing_display({"DISPLAY": ":1"}, "linux") is None
    assert missing_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert missing_display({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert missing_display({}, "darwin") is None


def test_overt_tray_without_a_display_exits_1_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"}}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "overt", "tray", "--socket", str(tmp_path / "a.sock"),
         "--", "--trust", "k.pub"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        "overt tray: no display: the tray needs a desktop session (set DISPLAY)\n"
    )
    assert not (tmp_path / "a.sock").exists()


def test_a_qt_binding_that_drops_references_is_refused_before_an_agent_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr(ui.qt_binding, "binding_fault", lambda calls=0: "PySide6 9.9 is faulty")
    started: list[AgentLauncher] = []
    monkeypatch.setattr(AgentLauncher, "start", lambda self: started.append(self))
    socket = tmp_path / "run" / "a.sock"
    code = main(["--socket", str(socket), "--", "--trust", "k.pub"])
    assert code == 1
    assert capsys.readouterr().err == "overt tray: PySide6 9.9 is faulty\n"
    assert started == []
    assert not socket.parent.exists()  # no lock taken either
