"""Fixtures for tests that run on a real (virtual) X desktop.

- ``desktop`` (session): a private Xvfb + openbox started by this test run
  (see :mod:`tests.desktop`); DISPLAY points at it for the whole session and
  is restored afterwards. Missing Xvfb/openbox FAILS the test with an install
  hint; it is never skipped.
- ``tray_host`` (session): trayer on that desktop, ready once it owns
  ``_NET_SYSTEM_TRAY_S0``; yields its ``Popen``.
- ``launch`` (function): ``launch(module, wm_class, *args) -> AppWindow``;
  every app it started is killed when the test ends.
- ``workapp`` / ``otherapp`` (function): one running test app each, at a
  fixed place (see their defaults below), as an ``AppWindow``.
- ``start_agent`` (function): ``start_agent(consent=True, probe=None,
  document=None, **capture) -> Rig``, the real agent on this desktop (see
  :mod:`tests.e2e.rig`); stopped when the test ends.
- ``workapp_python`` (session): a copy of the Python binary named
  ``overt-workapp-python``, so the work app is a distinct executable that a
  policy can allow by path (``AppMatch.exe_paths``).
- ``launch_workapp`` (function): ``launch_workapp(*args, geometry=...,
  title=...) -> AppWindow`` runs the work app under that copy.
- ``program`` (function): ``program(argv, wm_class, title=None) ->
  AppWindow`` runs any program and finds its window by the PID the X server
  reports for it (X-Resource).
- ``xwindow`` (function): ``xwindow(geometry, colour, *options) ->
  XWindowProc``, one window of :mod:`tests.e2e.xwindows`, driven by commands.

Everything these start is killed when the test (or the session) ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.desktop import (
    AppWindow,
    Desktop,
    DesktopError,
    display_env,
    start_desktop,
    start_tray_host,
)
from tests.e2e.rig import DistinctPython, Rig, agents, copy_python
from tests.e2e.xwindows import XWindowProc, start_xwindow

WORKAPP_GEOMETRY = (100, 120, 800, 600)
OTHERAPP_GEOMETRY = (700, 400, 600, 400)


@pytest.fixture(scope="session")
def desktop() -> Iterator[Desktop]:
    try:
        running = start_desktop()
    except (DesktopError, TimeoutError) as exc:
        pytest.fail(f"could not start the test desktop: {exc}", pytrace=False)
    try:
        with display_env(running.display):
            yield running
    finally:
        running.close()


@pytest.fixture(scope="session")
def tray_host(desktop: Desktop) -> Iterator[object]:
    try:
        proc = start_tray_host(desktop)
    except (DesktopError, TimeoutError) as exc:
        pytest.fail(f"could not start the tray host: {exc}", pytrace=False)
    yield proc
    desktop.kill(proc)


Launch = Callable[..., AppWindow]


@pytest.fixture
def launch(desktop: Desktop) -> Iterator[Launch]:
    started: list[AppWindow] = []

    def run(module: str, wm_class: str, *args: str | int) -> AppWindow:
        app = desktop.launch_app(module, wm_class, *args)
        started.append(app)
        return app

    yield run
    for app in started:
        desktop.kill(app.proc)


def _geometry_args(x: int, y: int, width: int, height: int) -> list[str | int]:
    return ["--x", x, "--y", y, "--width", width, "--height", height]


@pytest.fixture
def workapp(launch: Launch) -> AppWindow:
    return launch(
        "tests.e2e.workapp",
        "overt-workapp",
        "--title",
        "Overt Work App",
        *_geometry_args(*WORKAPP_GEOMETRY),
    )


@pytest.fixture
def otherapp(launch: Launch) -> AppWindow:
    return launch("tests.e2e.otherapp", "overt-otherapp", *_geometry_args(*OTHERAPP_GEOMETRY))


@pytest.fixture
def start_agent(desktop: Desktop, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    with agents(desktop, tmp_path) as start:
        yield start


@pytest.fixture(scope="session")
def workapp_python(tmp_path_factory: pytest.TempPathFactory) -> DistinctPython:
    try:
        return copy_python(tmp_path_factory.mktemp("workapp-exe"))
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


LaunchWorkapp = Callable[..., AppWindow]


@pytest.fixture
def launch_workapp(desktop: Desktop, workapp_python: DistinctPython) -> Iterator[LaunchWorkapp]:
    started: list[AppWindow] = []

    def run(
        *args: str | int,
        geometry: tuple[int, int, int, int] = WORKAPP_GEOMETRY,
        title: str = "Overt Work App",
    ) -> AppWindow:
        argv = workapp_python.argv(
            "tests.e2e.workapp", "--title", title, *_geometry_args(*geometry), *args
        )
        app = desktop.launch_program(argv, "overt-workapp", env=workapp_python.env, title=title)
        started.append(app)
        return app

    yield run
    for app in started:
        desktop.kill(app.proc)


Program = Callable[..., AppWindow]


@pytest.fixture
def program(desktop: Desktop) -> Iterator[Program]:
    started: list[AppWindow] = []

    def run(argv: list[str], wm_class: str, title: str | None = None) -> AppWindow:
        app = desktop.launch_program(argv, wm_class, title=title)
        started.append(app)
        return app

    yield run
    for app in started:
        desktop.kill(app.proc)


XWindow = Callable[..., XWindowProc]


@pytest.fixture
def xwindow(desktop: Desktop, tmp_path: Path) -> Iterator[XWindow]:
    started: list[XWindowProc] = []

    def run(
        geometry: tuple[int, int, int, int], colour: tuple[int, int, int], *options: str | int
    ) -> XWindowProc:
        window = start_xwindow(desktop, tmp_path, geometry, colour, *options)
        started.append(window)
        return window

    yield run
    for window in started:
        desktop.kill(window.proc)
