"""The test desktop itself: private display, tray host, clean teardown."""

from __future__ import annotations

import os

import pytest

from tests.desktop import Desktop, start_desktop

pytestmark = pytest.mark.desktop


def test_the_session_display_is_ours_and_in_the_environment(desktop: Desktop) -> None:
    assert os.environ["DISPLAY"] == desktop.display
    assert desktop.pids  # Xvfb and openbox, recorded for teardown


def test_tray_host_owns_the_system_tray_selection(desktop: Desktop, tray_host: object) -> None:
    assert desktop.selection_owner("_NET_SYSTEM_TRAY_S0") != 0


def test_teardown_stops_only_what_it_started_and_frees_the_display(desktop: Desktop) -> None:
    # Earlier tests may have left programs on the session desktop that ended on
    # their own; what matters is that closing a second desktop ends none of ours.
    running = [p for p in desktop._procs if p.poll() is None]
    assert running  # Xvfb and openbox at least
    second = start_desktop()
    number = second.display.lstrip(":")
    assert second.display != desktop.display
    procs = list(second._procs)
    second.close()
    assert all(p.poll() is not None for p in procs)
    assert not os.path.exists(f"/tmp/.X{number}-lock")
    assert all(p.poll() is None for p in running)
