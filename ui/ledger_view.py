"""The ledger in words and numbers, for the "What is captured" dialog (no Qt).

Owns turning a :class:`~overt.wire.control_results.LedgerReport` into what the dialog shows: one
:class:`LedgerRow` per batch (newest first) with its time range, apps, counts
per signal and fate in plain words; one :class:`BudgetDay` per day for the
upload chart; and a one-line summary. It does not draw anything
(:mod:`ui.budget_chart` does) and never changes the ledger it is given.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, tzinfo

from overt.wire.control_results import LedgerBatch, LedgerReport
from ui.presentation import human_bytes

#: Signal names of the batch header (overt/wire/batch.py), in the order
#: and words a person reads them. Unknown names are shown as they come.
SIGNAL_WORDS = {
    "clicks": "clicks",
    "scrolls": "scrolls",
    "paths": "mouse paths",
    "text_spans": "text entries",
    "redactions": "redactions",
    "shortcuts": "shortcuts",
    "key_timings": "key timings",
    "contexts": "window changes",
    "screenshots": "screenshots",
    "markers": "markers",
}
#: Detail that would only clutter a row.
_HIDDEN_SIGNALS = {"path_samples"}

STATE_WORDS = {
    "held": "held for review",
    "ready": "waiting to upload",
    "uploaded": "uploaded",
    "discarded": "discarded by you",
    "dead": "refused by the collector",
    "quarantined": "set aside (unreadable)",
}


@dataclass(frozen=True, slots=True)
class LedgerRow:
    when: str
    apps: str
    signals: str
    size: str
    fate: str
    batch_id: str
    #: Where it went, for a tooltip ("" when it has not left the machine).
    destination: str


@dataclass(frozen=True, slots=True)
class BudgetDay:
    """One bar of the chart: ``label`` is short ("Mon 12")."""

    day: str
    label: str
    uploaded: int
    budget: int

    @property
    def over(self) -> bool:
        return self.budget > 0 and self.uploaded > self.budget


def _local(ms: int, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=tz)


def signal_summary(counts: dict[str, int] | object) -> str:
    """``{"clicks": 3, "screenshots": 1}`` → ``"3 clicks · 1 screenshots"``."""
    if not isinstance(counts, dict):
        return ""
    known = [name for name in SIGNAL_WORDS if counts.get(name)]
    others = sorted(
        name for name in counts if name not in SIGNAL_WORDS and name not in _HIDDEN_SIGNALS
    )
    parts = [f"{counts[n]} {SIGNAL_WORDS.get(n, n.replace('_', ' '))}" for n in known]
    parts += [f"{counts[n]} {n.replace('_', ' ')}" for n in others if counts[n]]
    return " · ".join(parts) or "nothing"


def _fate(batch: LedgerBatch, tz: tzinfo | None) -> str:
    words = STATE_WORDS.get(batch.state, batch.state)
    if batch.state == "uploaded" and batch.uploaded_at_ms is not None:
        words += " " + _local(batch.uploaded_at_ms, tz).strftime("%a %d %b %H:%M")
    return words


def _when(batch: LedgerBatch, tz: tzinfo | None) -> str:
    start, end = _local(batch.start_ms, tz), _local(batch.end_ms, tz)
    text = start.strftime("%a %d %b %H:%M")
    if end.date() == start.date():
        return f"{text}-{end.strftime('%H:%M')}"
    return f"{text} to {end.strftime('%a %d %b %H:%M')}"


def ledger_rows(ledger: LedgerReport, tz: tzinfo | None = None) -> list[LedgerRow]:
    """One row per batch, newest first."""
    batches = sorted(ledger.batches, key=lambda b: (b.start_ms, b.seq), reverse=True)
    return [
        LedgerRow(
            when=_when(b, tz),
            apps=", ".join(b.apps) or "—",
            signals=signal_summary(dict(b.counts)),
            size=human_bytes(b.bytes),
            fate=_fate(b, tz),
            batch_id=b.batch_id,
            destination=b.destination or "",
        )
        for b in batches
    ]


def budget_days(ledger: LedgerReport) -> list[BudgetDay]:
    """The chart's bars, oldest day first."""
    out = []
    for d in sorted(ledger.daily, key=lambda d: d.day):
        try:
            label = datetime.strptime(d.day, "%Y-%m-%d").strftime("%a %d")
        except ValueError:
            label = d.day
        out.append(BudgetDay(d.day, label, d.bytes_uploaded, d.budget))
    return out


def ledger_summary(ledger: LedgerReport, days: int) -> str:
    """A sentence: how many batches, and what became of them."""
    if not ledger.batches:
        return f"Nothing was captured on this machine in the last {days} days."
    states: Counter[str] = Counter(b.state for b in ledger.batches)
    uploaded = sum(b.bytes for b in ledger.batches if b.state == "uploaded")
    n = len(ledger.batches)
    parts = []
    if states["uploaded"]:
        parts.append(f"{states['uploaded']} uploaded ({human_bytes(uploaded)})")
    waiting = states["held"] + states["ready"]
    if waiting:
        parts.append(f"{waiting} still on this machine (you can discard them)")
    if states["discarded"]:
        parts.append(f"{states['discarded']} discarded by you")
    if states["dead"] + states["quarantined"]:
        parts.append(f"{states['dead'] + states['quarantined']} not sent")
    others = n - sum(states[s] for s in STATE_WORDS)
    if others:
        parts.append(f"{others} in other states")
    noun = "batch" if n == 1 else "batches"
    return f"{n} {noun} in the last {days} days: " + ", ".join(parts) + "."
