"""What ``overt status|consent|ledger|…`` print: the control API's results as lines.

This module owns the employee CLI's wording for a terminal: sizes, local
times, the status lines, the capture notice, the consent question's
context, the ledger and the exemption tables. Each ``*_lines`` function
takes a result model of ``overt.wire.control_results`` (read and checked by
the client) and returns lines; all are pure. The headline that opens most
answers is ``ui.presentation.terminal_headline``, beside the tray's, so
that what capture is doing is worded in one place. No Qt, no socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from overt.wire.control_results import (
    ConsentOffer,
    LedgerReport,
    RequestedExemption,
    SpoolSummary,
    Status,
    UploadSummary,
)
from overt.wire.notice import CaptureNotice
from ui.presentation import terminal_headline


def size(n: int) -> str:
    """Bytes in binary units, one decimal: ``1.5 MiB``."""
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def clock_time(ms: int) -> str:
    """Local wall-clock time ``HH:MM`` of an epoch-milliseconds instant."""
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%H:%M")


def local_moment(ms: int) -> str:
    """Local ``YYYY-MM-DD HH:MM`` of an epoch-milliseconds instant."""
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M")


def _day(iso: str | None) -> str:
    """The date part of an ISO 8601 instant, in UTC; '?' when unknown."""
    if not iso:
        return "?"
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d")
    except ValueError:
        return iso


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def status_lines(status: Status) -> list[str]:
    """Everything ``overt status`` prints."""
    lines = [terminal_headline(status)]
    if status.problem:
        lines.append(f"Problem: {status.problem}")
    if status.consent_needed:
        lines.append("Your answer to the capture notice is needed: run `overt consent`.")
    policy = status.policy
    if policy is not None:
        who = f" from {policy.organisation}" if policy.organisation else ""
        until = f", valid until {_day(policy.expires)}" if policy.expires else ""
        lines.append(f"Policy: version {policy.version}{who}{until}.")
    else:
        lines.append("Policy: none in force.")
    if status.reason != "paused":
        lines.append(f"Pause: up to {status.pause_max_minutes} minutes with `overt pause`.")
    if not status.exemptions:
        lines.append("Exemptions: none.")
    else:
        granted = "; ".join(f"{e.category} until {_day(e.expires)}" for e in status.exemptions)
        lines.append(f"Exemptions: {granted}.")
    lines.append(_spool_line(status.spool))
    lines.extend(_upload_lines(status.upload))
    return lines


def _spool_line(spool: SpoolSummary | None) -> str:
    if spool is None:
        return "Spool: not reported by this agent."
    parts = [f"{spool.held} held for review", f"{spool.ready} ready to upload"]
    if spool.dead:
        parts.append(f"{spool.dead} refused by the collector")
    if spool.quarantined:
        parts.append(f"{spool.quarantined} quarantined")
    return (
        f"Spool: {plural(spool.batches, 'batch', 'batches')}, "
        f"{size(spool.bytes)} of {size(spool.budget)} ({', '.join(parts)})."
    )


def _upload_lines(upload: UploadSummary | None) -> list[str]:
    if upload is None:
        return ["Upload: not reported by this agent."]
    line = f"Upload: {upload.state}"
    if upload.why:
        line += f" ({upload.why})"
    if upload.last_success_ms is not None:
        line += f"; last upload at {local_moment(upload.last_success_ms)}"
    return [
        line + ".",
        f"Today: {size(upload.today_bytes)} uploaded of the "
        f"{size(upload.daily_budget)} daily budget.",
    ]


_TITLE_WORDS = {"keep": "kept", "mask": "kept, with matches masked", "drop": "not kept"}


def notice_lines(notice: CaptureNotice) -> list[str]:
    """The capture notice (``consent.show``'s ``notice``) in plain words."""
    policy = notice.policy
    lines = [
        f"Capture notice — {notice.organisation}, policy version {policy.version} "
        f"(valid until {_day(policy.expires)})",
        f"Contact: {notice.contact}",
        f"Purpose: {notice.purpose}",
        "",
        "Captured apps (nothing is recorded outside these):",
    ]
    for app in notice.apps:
        lines.append(f"  - {app.name}")
        if app.actions_only:
            lines.append(
                "      actions only: your own clicks and keys; no titles, no screenshots, "
                "nothing received from others"
            )
        lines.append(f"      keystrokes: {app.keystrokes_words}")
        lines.append(f"      mouse: {'clicks, scrolls, movement paths' if app.mouse else 'no'}")
        shots = app.screenshots
        lines.append(f"      screenshots: {shots.words if shots else 'no'}")
        if not app.actions_only:
            lines.append(f"      window titles: {_TITLE_WORDS.get(app.titles, app.titles)}")
        for rule in app.title_rules:
            lines.append(f"      title rule: /{rule.pattern}/ → {rule.words}")
    if notice.never_captured:
        lines.append("Never captured: " + ", ".join(notice.never_captured) + ".")
    redaction = notice.redaction
    redacted = ", ".join(redaction.builtin) or "nothing"
    if redaction.custom:
        redacted += "; custom: " + ", ".join(redaction.custom)
    upload = notice.upload
    conditions = [
        c
        for c, on in (
            ("on AC power", upload.ac_only),
            ("on unmetered networks", upload.unmetered_only),
        )
        if on
    ]
    lines += [
        "",
        f"Typed text is redacted before it is stored: {redacted}.",
        f"Batches wait {notice.review_window_minutes} minutes on this machine before upload; "
        "you can discard them meanwhile (`overt discard MIN`).",
        f"Upload: at most {size(upload.daily_bytes)} a day"
        + (f", only {' and '.join(conditions)}." if conditions else "."),
        f"Kept for {notice.retention_days} days; readable only by: "
        + "; ".join(notice.readers)
        + ".",
        "On battery: "
        + ("screenshots continue." if notice.on_battery.screenshots else "no screenshots."),
        f"You can pause capture at any time for up to {notice.pause_max_minutes} minutes.",
        "",
        "Exemptions you can request:",
    ]
    for entry in notice.exemptions.categories:
        note = "" if entry.grantable else " (no admin may grant this yet)"
        lines.append(f"  - {entry.category}: {entry.words} → {entry.effect}{note}")
    lines.append(f"  {notice.exemptions.how}")
    return lines


def consent_lines(shown: ConsentOffer) -> list[str]:
    """The notice, plus what changed since the last acceptance."""
    lines = notice_lines(shown.notice)
    previous = shown.previous
    if shown.widening:
        since = previous.policy_version if previous is not None else "?"
        lines += ["", f"Since you last agreed (policy version {since}), this policy captures:"]
        lines += [f"  - {change}" for change in shown.widening]
    if previous is not None:
        answer = "accepted" if previous.accepted else "declined"
        lines += [
            "",
            f"Your answer on record: {answer} (policy version {previous.policy_version}, "
            f"{local_moment(previous.at_ms)}).",
        ]
    return lines


def ledger_lines(ledger: LedgerReport, days: int) -> list[str]:
    """The ledger as a table of batches and the daily upload totals."""
    batches = ledger.batches
    if not batches:
        lines = [f"No batches in the last {plural(days, 'day')}."]
    else:
        rows = [("SEQ", "FROM", "TO", "APPS", "SIZE", "STATE", "UPLOADED", "COUNTS")]
        for b in batches:
            uploaded = local_moment(b.uploaded_at_ms) if b.uploaded_at_ms else "-"
            if b.destination and uploaded != "-":
                uploaded += f" to {b.destination}"
            counts = ", ".join(f"{k} {v}" for k, v in sorted(b.counts.items()) if v)
            rows.append(
                (
                    str(b.seq),
                    local_moment(b.start_ms),
                    clock_time(b.end_ms),
                    ", ".join(b.apps) or "-",
                    size(b.bytes),
                    b.state,
                    uploaded,
                    counts or "-",
                )
            )
        lines = _table(rows)
        total = sum(b.bytes for b in batches)
        count = plural(len(batches), "batch", "batches")
        lines.append(f"{count}, {size(total)} in the last {plural(days, 'day')}.")
    for day in ledger.daily:
        lines.append(
            f"{day.day}: {size(day.bytes_uploaded)} uploaded of the "
            f"{size(day.budget)} daily budget."
        )
    return lines


def exemption_lines(requests: Sequence[RequestedExemption]) -> list[str]:
    if not requests:
        return ["No exemption requests."]
    rows = [("REQUEST", "CATEGORY", "DAYS", "STATUS", "DECIDED", "NOTE")]
    for r in requests:
        note = r.decision_reason or ""
        if r.grant_expires:
            note = (note + "; " if note else "") + f"until {_day(r.grant_expires)}"
        decided = _day(r.decided_at) if r.decided_at else "-"
        rows.append((r.request_id, r.category, str(r.duration_days), r.status, decided, note))
    return _table(rows)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
