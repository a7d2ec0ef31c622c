"""The check that the installed PySide6 takes its references to None and True."""

from __future__ import annotations

from ui.qt_binding import binding_fault, count_lost_references, qt_lost_references


def test_the_installed_pyside6_keeps_its_references() -> None:
    lost = qt_lost_references()
    assert not lost.faulty, binding_fault()


def test_a_call_that_drops_a_reference_each_time_is_found_faulty() -> None:
    # Pure Python stands in for a faulty binding: the references it drops
    # were taken before the count started.
    held = [None] * 200

    def drops_none() -> None:
        held.pop()

    lost = count_lost_references(drops_none, 100)
    assert (lost.none, lost.true, lost.false) == (100, 0, 0)
    assert lost.faulty
    assert not count_lost_references(lambda: None, 100).faulty
