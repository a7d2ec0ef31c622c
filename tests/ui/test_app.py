"""``overt tray``'s command line (the running tray is tested in tests/e2e/test_tray.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ui.app import agent_arguments, parse_options


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
