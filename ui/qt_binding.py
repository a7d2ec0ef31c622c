"""Whether the installed PySide6 keeps its references to None, True and False.

A C function that returns ``None`` hands its caller a reference, which the
caller later releases. Python 3.12 made ``None``, ``True`` and ``False``
immortal, so a binding built for 3.12 may skip taking that reference; on
Python 3.11, which this project supports, every such call then drops one.
The tray makes about twenty such calls at each status poll (every setter:
``setText``, ``setEnabled``, ``setIcon``…, and every ``Signal.emit``), so
the count falls by about ten a second and the process dies of
``Fatal Python error: none_dealloc`` (or ``bool_dealloc``) within the hour,
or when it quits after a few minutes, because the interpreter's shutdown
releases what is left. PySide6-Essentials 6.12.0 (with shiboken6 6.12.0) is such a build:
libshiboken's ``Sbk_ReturnFromPython_None``, which the wrapped ``void``
methods return through, returns ``Py_None`` without ``Py_INCREF``, and
``Signal.emit`` returns ``True`` the same way; in 6.11.3 both take the
reference.

:func:`binding_fault` asks the installed binding, by calling a ``void``
method and emitting a signal many times and counting; ``overt tray``
refuses to start on a faulty one, before it starts an agent: a tray bound to
crash must not start capture that it then could not show.

It does not own the remedy (a PySide6 without the fault, declared where the
project's dependencies are) and does not touch the display.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

#: How many calls :func:`binding_fault` makes: enough that a count moved by
#: another thread meanwhile cannot pass for a fault, and few against what a
#: fresh process holds (a few hundred references to True).
PROBE_CALLS = 100


@dataclass(frozen=True, slots=True)
class LostReferences:
    """How many references to each singleton ``calls`` calls released and never took."""

    calls: int
    none: int
    true: int
    false: int

    @property
    def faulty(self) -> bool:
        """At least one reference lost for every other call: not noise, a fault."""
        return max(self.none, self.true, self.false) * 2 >= self.calls


def count_lost_references(call: Callable[[], object], calls: int) -> LostReferences:
    """Call ``call`` ``calls`` times; how far the counts of None, True and False fell."""
    before = (sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False))
    for _ in range(calls):
        call()
    after = (sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False))
    none, true, false = (b - a for b, a in zip(before, after, strict=True))
    return LostReferences(calls, none, true, false)


def qt_lost_references(calls: int = PROBE_CALLS) -> LostReferences:
    """The references the installed PySide6 loses over ``calls`` void calls and emits."""
    from PySide6.QtCore import QObject, Signal

    class Probe(QObject):
        probed = Signal()

    probe = Probe()

    def call() -> None:
        probe.setObjectName("overt-binding-probe")  # a void method: returns None
        probe.probed.emit()  # returns True

    call()  # the first call may create caches; only the steady state counts
    lost = count_lost_references(call, calls)
    if lost.faulty:
        _give_back(lost, calls + 1)
    return lost


def _give_back(lost: LostReferences, calls_made: int) -> None:
    """Take again the references the probe made a faulty binding drop.

    Without them the interpreter's shutdown, right after the tray refuses to
    start, could release None or True once too often and abort. The steady
    rate, over every call made (the first one too).
    """
    import ctypes

    for value, count in ((None, lost.none), (True, lost.true), (False, lost.false)):
        dropped = round(max(0, min(count, lost.calls)) * calls_made / lost.calls)
        for _ in range(dropped):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(value))


def binding_fault(calls: int = PROBE_CALLS) -> str | None:
    """Why the installed PySide6 cannot run the tray for long, or None."""
    lost = qt_lost_references(calls)
    if not lost.faulty:
        return None
    import PySide6

    python = ".".join(map(str, sys.version_info[:2]))
    return (
        f"PySide6 {PySide6.__version__} drops references to None or True on Python {python} "
        f"({lost.none} to None, {lost.true} to True, {lost.false} to False in {lost.calls} "
        "calls): the tray would crash within the hour (Fatal Python error: none_dealloc). "
        "Install another PySide6-Essentials (6.12.0 has this fault, 6.11.3 has not) or use "
        "Python 3.12 or later"
    )
