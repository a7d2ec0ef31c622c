"""Agent calls run off the GUI thread and answer on it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from pytestqt.qtbot import QtBot

from tests.ui import qt_support  # noqa: F401  (offscreen Qt)
from ui.calls import InlineRunner, ThreadRunner
from ui.errors import AgentRefused, TrayError


def test_a_call_runs_on_a_worker_and_its_answer_arrives_on_the_gui_thread(qtbot: QtBot) -> None:
    runner = ThreadRunner()
    gui = threading.get_ident()
    seen: dict[str, int] = {}

    def call() -> int:
        seen["call"] = threading.get_ident()
        return 42

    answers: list[int] = []

    def done(value: int) -> None:
        seen["done"] = threading.get_ident()
        answers.append(value)

    runner.run(call, done, lambda e: None)
    qtbot.waitUntil(lambda: answers == [42])
    assert seen["call"] != gui
    assert seen["done"] == gui
    runner.close()


def test_calls_answer_in_the_order_they_were_made(qtbot: QtBot) -> None:
    runner = ThreadRunner()
    answers: list[int] = []

    def echo(i: int) -> Callable[[], int]:
        return lambda: i

    for i in range(20):
        runner.run(echo(i), answers.append, lambda e: None)
    qtbot.waitUntil(lambda: len(answers) == 20)
    assert answers == list(range(20))
    runner.close()


def test_a_refusal_reaches_failed_as_it_was(qtbot: QtBot) -> None:
    runner = ThreadRunner()
    errors: list[TrayError] = []

    def refuse() -> None:
        raise AgentRefused("not_allowed", "no")

    runner.run(refuse, lambda v: None, errors.append)
    qtbot.waitUntil(lambda: bool(errors))
    assert isinstance(errors[0], AgentRefused)
    assert errors[0].code == "not_allowed"
    runner.close()


def test_a_bug_in_a_call_becomes_a_tray_error_without_its_message() -> None:
    errors: list[TrayError] = []

    def broken() -> None:
        raise KeyError("typed text that must not be logged")

    InlineRunner().run(broken, lambda v: None, errors.append)
    (error,) = errors
    assert type(error) is TrayError
    assert "KeyError" in str(error)
    assert "typed text" not in str(error)


def test_after_close_no_answer_is_delivered(qtbot: QtBot) -> None:
    runner = ThreadRunner()
    started, release = threading.Event(), threading.Event()
    answers: list[int] = []

    def slow() -> int:
        started.set()
        release.wait(5)
        return 1

    runner.run(slow, answers.append, lambda e: None)
    assert started.wait(5)
    runner.close()
    release.set()
    runner.run(lambda: 2, answers.append, lambda e: None)
    qtbot.wait(50)
    assert answers == []
