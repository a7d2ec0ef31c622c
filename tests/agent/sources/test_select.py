"""Backend selection: one function per concern, env overrides, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agent.sources import (
    BackendUnavailableError,
    NoDisplayError,
    select_input_hooks,
    select_screen_grabber,
    select_window_probe,
)
from agent.sources._fake import FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources._platform import choose_backend
from agent.sources._xorg_reader import parse_xft_scale
from agent.sources.errors import NO_X_DISPLAY


def test_linux_without_display_says_how_to_fix_it() -> None:
    with pytest.raises(NoDisplayError) as info:
        select_window_probe(env={})
    assert str(info.value) == (
        "no X display: set DISPLAY, or run under Xvfb; Wayland sessions are not supported yet"
    )
    assert str(info.value) == NO_X_DISPLAY
    with pytest.raises(NoDisplayError):
        select_input_hooks(env={})
    with pytest.raises(NoDisplayError):
        select_screen_grabber(env={})


def test_env_overrides_choose_the_fake_backends_without_a_display() -> None:
    assert isinstance(select_window_probe(env={"OVERT_WINDOW_BACKEND": "fake"}), FakeWindowProbe)
    assert isinstance(select_input_hooks(env={"OVERT_INPUT_BACKEND": "fake"}), FakeInputHooks)
    assert isinstance(
        select_screen_grabber(env={"OVERT_SCREEN_BACKEND": "FAKE"}), FakeScreenGrabber
    )


def test_an_unknown_override_names_the_choices() -> None:
    with pytest.raises(BackendUnavailableError, match="xorg, win32, darwin, fake"):
        select_window_probe(env={"OVERT_WINDOW_BACKEND": "wayland"})


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"DISPLAY": ":0"}, "xorg"),
        ("win32", {}, "win32"),
        ("darwin", {}, "darwin"),
        ("freebsd14", {"DISPLAY": ":1"}, "xorg"),
    ],
)
def test_platform_decides_when_there_is_no_override(
    platform: str, env: dict[str, str], expected: str
) -> None:
    choices = ("xorg", "win32", "darwin", "fake")
    assert choose_backend("window", choices, env=env, platform=platform) == expected


def test_one_library_can_serve_every_platform() -> None:
    native = {"xorg": "pynput", "win32": "pynput", "darwin": "pynput"}
    assert choose_backend("input", ("pynput",), env={}, platform="win32", native=native) == (
        "pynput"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows refusal")
def test_win32_backend_refuses_to_run_elsewhere() -> None:
    from agent.sources._win32 import Win32WindowProbe

    with pytest.raises(BackendUnavailableError):
        Win32WindowProbe()


def test_importing_the_sources_touches_no_os_library() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    code = (
        "import sys, agent.sources, agent.sources.input, agent.sources.window, "
        "agent.sources.screen, agent.sources._pynput, agent.sources._xorg, "
        "agent.sources._mss, agent.sources._win32, agent.sources._darwin, agent.sources._fake\n"
        "bad = [m for m in ('pynput', 'Xlib', 'mss', 'PIL', 'AppKit', 'Quartz') "
        "if m in sys.modules]\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("resources", "scale"),
    [
        ("Xft.dpi:\t96\nXft.antialias:\t1\n", 1.0),
        ("Xft.dpi:\t192\n", 2.0),
        ("Xft.antialias:\t1\n", 1.0),
        ("Xft.dpi:\tnonsense\n", 1.0),
        ("", 1.0),
    ],
)
def test_xft_dpi_sets_the_scale(resources: str, scale: float) -> None:
    assert parse_xft_scale(resources) == scale
