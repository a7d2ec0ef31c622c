"""Every ``overt`` command the dispatcher lists is there and answers --help."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from overt.cli import COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_resolves_to_a_function(command: str) -> None:
    module_name, _, function = COMMANDS[command][0].partition(":")
    assert callable(getattr(importlib.import_module(module_name), function or "main"))


@pytest.mark.parametrize("command", ["status", "collector", "export", "tray"])
def test_help_exits_zero_and_names_the_command(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "overt", command, "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"overt {command}" in result.stdout
