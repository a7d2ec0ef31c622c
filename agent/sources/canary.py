"""The filter self-test's canary: a real top-level window the policy must not allow.

This module owns opening and closing that window; :mod:`agent.selftest`
decides what seeing it means. The canary has WM_CLASS ``overt-canary`` and no
``_NET_WM_PID``, so nothing but a policy that (wrongly) allow-lists
``overt-canary`` can match it. It asks the window manager not to give it
keyboard focus, so the self-test does not take focus from the person at the
desk.

Backends: ``xorg`` (python-xlib, tested on Xvfb + openbox) and ``fake``. On
other platforms :func:`open_canary` raises
:class:`~agent.sources.errors.BackendUnavailableError`, so the self-test fails
and capture stays off rather than running unchecked.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

from agent.events import Rect
from agent.sources._platform import choose_backend
from agent.sources.errors import BackendUnavailableError

CANARY_CLASS = "overt-canary"
CANARY_TITLE = "Overt filter self-test"
#: Where the canary asks to be placed (the window manager may move it).
CANARY_RECT = Rect(48, 48, 160, 90)


class Canary(abc.ABC):
    """An open canary window."""

    window_id: int

    @abc.abstractmethod
    def geometry(self) -> Rect | None:
        """Where the canary's client area is on screen, once it is mapped."""

    @abc.abstractmethod
    def close(self) -> None:
        """Destroy the window. Safe to call twice."""

    def __enter__(self) -> Canary:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_canary(rect: Rect = CANARY_RECT, env: Mapping[str, str] | None = None) -> Canary:
    """Open a canary window at ``rect`` (the window manager may move it)."""
    name = choose_backend("window", ("xorg", "win32", "darwin", "fake"), env=env)
    if name == "xorg":
        from agent.sources._xorg_canary import XorgCanary

        return XorgCanary(rect)
    if name == "fake":
        from agent.sources._fake import FakeCanary

        return FakeCanary(rect)
    raise BackendUnavailableError(f"the filter self-test has no canary window on {name!r} yet")
