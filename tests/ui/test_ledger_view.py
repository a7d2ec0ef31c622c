"""The ledger in words and the upload chart's numbers."""

from __future__ import annotations

from datetime import UTC

from overt.wire.control_results import LedgerReport
from tests.ui.fake_agent import FakeAgent, ManualClock, sample_batches
from ui.ledger_view import budget_days, ledger_rows, ledger_summary, signal_summary


def _ledger() -> LedgerReport:
    clock = ManualClock()
    return FakeAgent(clock=clock, batches=sample_batches(clock.now_ms)).ledger(7)


def test_rows_are_newest_first_with_apps_signals_and_fate() -> None:
    rows = ledger_rows(_ledger(), UTC)
    assert rows[0].when == "Sun 22 Nov 11:55-11:57"
    assert rows[0].apps == "LibreOffice Writer"
    assert rows[0].signals == "9 clicks · 4 shortcuts · 2 screenshots"
    assert rows[0].fate == "held for review"
    assert rows[0].destination == ""
    uploaded = rows[-1]
    assert uploaded.fate == "uploaded Mon 16 Nov 13:00"
    assert uploaded.destination == "https://collector.example"
    assert uploaded.size == "6.0 MiB"


def test_signal_summary_skips_zeroes_and_sample_counts_and_keeps_unknown_signals() -> None:
    assert signal_summary({"clicks": 0, "path_samples": 900, "paths": 3}) == "3 mouse paths"
    assert signal_summary({"gestures": 2}) == "2 gestures"
    assert signal_summary({}) == "nothing"


def test_budget_days_are_oldest_first_and_flag_the_day_over_budget() -> None:
    days = budget_days(_ledger())
    assert [d.day for d in days] == sorted(d.day for d in days)
    assert len(days) == 7
    over = [d.label for d in days if d.over]
    assert over == ["Thu 19"]


def test_summary_counts_batches_by_fate() -> None:
    ledger = _ledger()
    assert ledger_summary(ledger, 7) == (
        "12 batches in the last 7 days: 10 uploaded (133 MiB), "
        "2 still on this machine (you can discard them)."
    )
    assert ledger_summary(LedgerReport(batches=(), daily=()), 1) == (
        "Nothing was captured on this machine in the last 1 days."
    )
