"""The capture notice in plain words, for the consent and "What is captured" dialogs.

Owns turning the notice of ``consent.show`` (``overt.wire.notice.
CaptureNotice``, built by the agent from the signed policy) into sections of
plain sentences (:func:`notice_sections`) and into the small HTML subset a
``QTextBrowser`` shows (:func:`notice_html`). No Qt here.

Every string from the notice is escaped before it enters HTML: the policy is
signed by IT, but an app name is still text, not markup. The notice arrives
read by its model, so every sentence here says what a field says; a notice
the model does not accept never reaches this module.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from overt.wire.notice import CaptureNotice, NoticeApp
from ui.presentation import human_bytes, minutes_phrase

_TITLE_WORDS = {
    "keep": "window titles: kept",
    "mask": "window titles: kept, with the parts the policy names masked",
    "drop": "window titles: no",
    "none": "window titles: no",
}

#: A pattern that is only words in alternation, e.g. ``(?i)\b(bank|payroll)\b``.
_PLAIN_ALTERNATION = re.compile(r"[\w ,'&-]+(?:\|[\w ,'&-]+)*")


def pattern_words(pattern: str) -> str | None:
    """``(?i)\b(bank|payroll|health)\b`` → ``"bank, payroll or health"``.

    None when the pattern is more than a list of words (then the notice
    shows the pattern itself: honest, if less friendly).
    """
    core = pattern.removeprefix("(?i)").replace("\\b", "")
    if core.startswith("(") and core.endswith(")") and core.count("(") == 1:
        core = core[1:-1]
    if not _PLAIN_ALTERNATION.fullmatch(core):
        return None
    words = [w.strip() for w in core.split("|") if w.strip()]
    if len(words) == 1:
        return f"“{words[0]}”"
    return ", ".join(f"“{w}”" for w in words[:-1]) + f" or “{words[-1]}”"


def _title_rule(pattern: str, action: str, words: str) -> str:
    plain = pattern_words(pattern)
    if plain is not None:
        subject = f"windows whose title mentions {plain}"
        mentions = f"mentions of {plain} in window titles"
    else:
        subject = f"windows whose title matches /{pattern}/"
        mentions = f"text matching /{pattern}/ in window titles"
    if action == "skip":
        return f"not captured: {subject}"
    if action == "drop":
        return f"no title kept for {subject}"
    if action == "mask":
        return f"masked: {mentions}"
    return f"{subject}: {words}"


@dataclass(frozen=True, slots=True)
class Section:
    """A heading and its lines; a line that is a tuple is a sub-list."""

    heading: str
    lines: tuple[str | tuple[str, ...], ...]


def app_lines(app: NoticeApp) -> tuple[str, ...]:
    """What is captured in one app, one signal per line."""
    lines = []
    if app.actions_only:
        lines.append("only your own clicks and keys: nothing that others send you")
    keys = app.keystrokes_words or app.keystrokes
    if keys:
        lines.append(f"keyboard: {keys}")
    lines.append("mouse: clicks, scrolls and mouse paths" if app.mouse else "mouse: no")
    shots = app.screenshots
    lines.append(f"screenshots: {shots.words or 'yes'}" if shots else "screenshots: no")
    lines.append(_TITLE_WORDS.get(app.titles, f"window titles: {app.titles}"))
    for rule in app.title_rules:
        if rule.pattern:
            lines.append(_title_rule(rule.pattern, rule.action, rule.words))
    return tuple(lines)


def notice_sections(notice: CaptureNotice) -> list[Section]:
    """The notice as headed groups of sentences, in reading order."""
    org = notice.organisation or "Your organisation"
    sections: list[Section] = []

    why = []
    if notice.purpose:
        why.append(f"{org} records how its work apps are used. The purpose: {notice.purpose}.")
    if notice.contact:
        why.append(f"Questions go to {notice.contact}.")
    if why:
        sections.append(Section("Why", tuple(why)))

    apps: list[str | tuple[str, ...]] = []
    for app in notice.apps:
        apps.append(app.name or app.id or "an app")
        apps.append(app_lines(app))
    if apps:
        apps.insert(0, "Only in these apps; nothing is recorded anywhere else:")
    else:
        apps.append("No app is captured.")
    if notice.never_captured:
        apps.append(
            "Never captured, even if a rule above would match: "
            + ", ".join(notice.never_captured)
            + "."
        )
    sections.append(Section("What is captured", tuple(apps)))

    care: list[str | tuple[str, ...]] = []
    kinds = [*notice.redaction.builtin, *notice.redaction.custom]
    if kinds:
        care.append(
            "Typed text is searched for these and they are replaced before anything is "
            "stored: " + ", ".join(k.replace("_", " ") for k in kinds) + "."
        )
    review = notice.review_window_minutes
    if review:
        care.append(
            f"Everything waits {minutes_phrase(review)} on this computer before it is "
            "uploaded; until then you can discard it from the tray."
        )
    else:
        care.append("There is no review window: what is captured is uploaded as soon as it can be.")
    upload = notice.upload
    when = [w for w, on in (("on AC power", upload.ac_only),
                            ("on unmetered networks", upload.unmetered_only)) if on]  # fmt: skip
    care.append(
        f"At most {human_bytes(upload.daily_bytes)} a day is uploaded"
        + (f", and only {' and '.join(when)}" if when else "")
        + "."
    )
    if not notice.on_battery.screenshots:
        care.append("On battery, no screenshots are taken.")
    care.append(f"It is kept for {notice.retention_days} days.")
    if notice.readers:
        care.append(
            "It is encrypted on this computer; only these can decrypt it: "
            + ", ".join(notice.readers)
            + "."
        )
    sections.append(Section("How it is handled", tuple(care)))

    control: list[str | tuple[str, ...]] = [
        f"Pause at any time from the tray, for up to {minutes_phrase(notice.pause_max_minutes)}; "
        "capture resumes by itself and the tray tells you shortly before."
    ]
    exemptions = notice.exemptions
    if exemptions.categories or exemptions.how:
        control.append("You may ask for an exemption, if:")
        items = []
        for cat in exemptions.categories:
            words = cat.words or cat.category
            line = f"{words} — if granted: {cat.effect}" if cat.effect else words
            if not cat.grantable:
                line += " (no admin can grant this yet)"
            items.append(line)
        if items:
            control.append(tuple(items))
        if exemptions.how:
            control.append(exemptions.how)
    sections.append(Section("What you can do", tuple(control)))

    policy = notice.policy
    expires = policy.expires
    line = f"Policy version {policy.version}" + (f", valid until {expires[:10]}" if expires else "")
    sections.append(Section("This notice", (line + ".",)))
    return sections


def notice_title(notice: CaptureNotice) -> str:
    org = notice.organisation or "Your organisation"
    return f"What {org} captures on this computer"


def _html_lines(lines: Sequence[str | tuple[str, ...]]) -> str:
    out = []
    for i, line in enumerate(lines):
        if isinstance(line, tuple):
            out.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in line) + "</ul>")
        elif i + 1 < len(lines) and isinstance(lines[i + 1], tuple):
            # A line followed by a sub-list heads it (an app's name).
            out.append(f"<p><b>{html.escape(line)}</b></p>")
        else:
            out.append(f"<p>{html.escape(line)}</p>")
    return "".join(out)


def notice_html(notice: CaptureNotice, widening: Sequence[str] = ()) -> str:
    """The notice as simple HTML; ``widening`` (what is new) comes first."""
    parts = [f"<h2>{html.escape(notice_title(notice))}</h2>"]
    if widening:
        parts.append(
            "<p><b>This policy captures more than what you agreed to before:</b></p><ul>"
            + "".join(f"<li>{html.escape(w)}</li>" for w in widening)
            + "</ul>"
        )
    for section in notice_sections(notice):
        parts.append(f"<h3>{html.escape(section.heading)}</h3>")
        parts.append(_html_lines(section.lines))
    return "".join(parts)
