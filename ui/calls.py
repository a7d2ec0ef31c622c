"""Running agent calls off the Qt event loop, and getting the answers back on it.

A control call blocks until the agent answers or times out (seconds, if the
agent is wedged); the tray must never freeze meanwhile. :class:`CallRunner`
is what the tray and its dialogs use: ``run(call, done, failed)`` runs
``call`` somewhere and later calls ``done(value)`` or ``failed(error)`` on
the GUI thread. :class:`ThreadRunner` runs calls one at a time, in order, on
one worker thread; :class:`InlineRunner` runs them at once, for tests.

Any exception that is not a :class:`~ui.errors.TrayError` is a bug: it is
logged by type (never by message, which could quote content) and reported to
``failed`` as a ``TrayError``, so the tray keeps running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from PySide6.QtCore import QObject, Signal

from ui.errors import TrayError

log = logging.getLogger(__name__)

T = TypeVar("T")


class CallRunner(Protocol):
    def run(
        self, call: Callable[[], T], done: Callable[[T], None], failed: Callable[[TrayError], None]
    ) -> None: ...


def _invoke(call: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, call()
    except TrayError as exc:
        return False, exc
    except Exception as exc:
        log.error("agent call failed with %s", type(exc).__name__)
        return False, TrayError(f"unexpected {type(exc).__name__} while talking to the agent")


class InlineRunner:
    """Runs each call at once, on the caller's thread (tests)."""

    def run(
        self, call: Callable[[], T], done: Callable[[T], None], failed: Callable[[TrayError], None]
    ) -> None:
        ok, value = _invoke(call)
        if ok:
            done(value)
        else:
            failed(value)


class ThreadRunner(QObject):
    """Runs calls in order on one worker thread; answers arrive on the GUI thread.

    The answer travels as a queued Qt signal: this object lives on the GUI
    thread and the signal is emitted from the worker, so Qt delivers it
    through the GUI thread's event loop.
    """

    _finished = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="overt-tray-call")
        self._closed = False
        self._finished.connect(self._deliver)

    def run(
        self, call: Callable[[], T], done: Callable[[T], None], failed: Callable[[TrayError], None]
    ) -> None:
        if self._closed:
            return

        def work() -> None:
            ok, value = _invoke(call)
            if not self._closed:
                self._finished.emit((ok, value, done, failed))

        self._pool.submit(work)

    def _deliver(
        self, item: tuple[bool, Any, Callable[[Any], None], Callable[[Any], None]]
    ) -> None:
        ok, value, done, failed = item
        if self._closed:
            return
        if ok:
            done(value)
        else:
            failed(value)

    def close(self) -> None:
        """Drop queued calls and answers; a call already running finishes unseen."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
