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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.desktop import (
    AppWindow,
    Desktop,
    DesktopError,
    display_env,
    start_desktop,
    start_tray_host,
)

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
