"""The capture notice in plain words, for the consent and "What is captured" dialogs.

Owns turning the ``notice`` object of ``consent.show`` (built by the agent
from the signed policy: ``agent/notice.py``, format 1) into sections of plain
sentences (:func:`notice_sections`) and into the small HTML subset a
``QTextBrowser`` shows (:func:`notice_html`). No Qt here.

Every string from the notice is escaped before it enters HTML: the policy is
signed by IT, but an app name is still text, not markup. A notice with a
field missing or of the wrong type loses that sentence, not the rest: an
older or newer agent still gets a readable notice, and nothing in it is
invented.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def _str(notice: Mapping[str, Any], name: str) -> str:
    value = notice.get(name)
    return value if isinstance(value, str) else ""


def _int(notice: Mapping[str, Any], name: str) -> int | None:
    value = notice.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _obj(notice: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = notice.get(name)
    return value if isinstance(value, Mapping) else {}


def _strs(value: Any) -> list[str]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [v for v in value if isinstance(v, str)]


def _objs(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [v for v in value if isinstance(v, Mapping)]


def app_lines(app: Mapping[str, Any]) -> tuple[str, ...]:
    """What is captured in one app, one signal per line."""
    lines = []
    if app.get("actions_only") is True:
        lines.append("only your own clicks and keys: nothing that others send you")
    keys = _str(app, "keystrokes_words") or _str(app, "keystrokes")
    if keys:
        lines.append(f"keyboard: {keys}")
    if isinstance(app.get("mouse"), bool):
        lines.append("mouse: clicks, scrolls and mouse paths" if app["mouse"] else "mouse: no")
    shots = app.get("screenshots")
    if isinstance(shots, Mapping):
        lines.append(f"screenshots: {_str(shots, 'words') or 'yes'}")
    elif "screenshots" in app:
        lines.append("screenshots: no")
    titles = _str(app, "titles")
    if titles:
        lines.append(_TITLE_WORDS.get(titles, f"window titles: {titles}"))
    for rule in _objs(app.get("title_rules")):
        pattern, action = _str(rule, "pattern"), _str(rule, "action")
        if pattern and action:
            lines.append(_title_rule(pattern, action, _str(rule, "words")))
    return tuple(lines)


def notice_sections(notice: Mapping[str, Any]) -> list[Section]:
    """The notice as headed groups of sentences, in reading order."""
    org = _str(notice, "organisation") or "Your organisation"
    sections: list[Section] = []

    why = []
    purpose = _str(notice, "purpose")
    if purpose:
        why.append(f"{org} records how its work apps are used. The purpose: {purpose}.")
    contact = _str(notice, "contact")
    if contact:
        why.append(f"Questions go to {contact}.")
    if why:
        sections.append(Section("Why", tuple(why)))

    apps: list[str | tuple[str, ...]] = []
    for app in _objs(notice.get("apps")):
        apps.append(_str(app, "name") or _str(app, "id") or "an app")
        apps.append(app_lines(app))
    if apps:
        apps.insert(0, "Only in these apps; nothing is recorded anywhere else:")
    else:
        apps.append("No app is captured.")
    never = _strs(notice.get("never_captured"))
    if never:
        apps.append("Never captured, even if a rule above would match: " + ", ".join(never) + ".")
    sections.append(Section("What is captured", tuple(apps)))

    care: list[str | tuple[str, ...]] = []
    redaction = _obj(notice, "redaction")
    kinds = _strs(redaction.get("builtin")) + _strs(redaction.get("custom"))
    if kinds:
        care.append(
            "Typed text is searched for these and they are replaced before anything is "
            "stored: " + ", ".join(k.replace("_", " ") for k in kinds) + "."
        )
    review = _int(notice, "review_window_minutes")
    if review:
        care.append(
            f"Everything waits {minutes_phrase(review)} on this computer before it is "
            "uploaded; until then you can discard it from the tray."
        )
    elif review == 0:
        care.append("There is no review window: what is captured is uploaded as soon as it can be.")
    upload = _obj(notice, "upload")
    daily = _int(upload, "daily_bytes")
    if daily is not None:
        when = [w for w, on in (("on AC power", upload.get("ac_only") is True),
                                ("on unmetered networks", upload.get("unmetered_only") is True))
                if on]  # fmt: skip
        care.append(
            f"At most {human_bytes(daily)} a day is uploaded"
            + (f", and only {' and '.join(when)}" if when else "")
            + "."
        )
    if _obj(notice, "on_battery").get("screenshots") is False:
        care.append("On battery, no screenshots are taken.")
    retention = _int(notice, "retention_days")
    readers = _strs(notice.get("readers"))
    if retention is not None:
        care.append(f"It is kept for {retention} days.")
    if readers:
        care.append(
            "It is encrypted on this computer; only these can decrypt it: "
            + ", ".join(readers)
            + "."
        )
    if care:
        sections.append(Section("How it is handled", tuple(care)))

    control: list[str | tuple[str, ...]] = []
    pause = _int(notice, "pause_max_minutes")
    if pause is not None:
        control.append(
            f"Pause at any time from the tray, for up to {minutes_phrase(pause)}; capture "
            "resumes by itself and the tray tells you shortly before."
        )
    exemptions = _obj(notice, "exemptions")
    categories = _objs(exemptions.get("categories"))
    if categories or _str(exemptions, "how"):
        control.append("You may ask for an exemption, if:")
        items = []
        for cat in categories:
            words = _str(cat, "words") or _str(cat, "category")
            effect = _str(cat, "effect")
            line = f"{words} — if granted: {effect}" if effect else words
            if cat.get("grantable") is False:
                line += " (no admin can grant this yet)"
            items.append(line)
        if items:
            control.append(tuple(items))
        how = _str(exemptions, "how")
        if how:
            control.append(how)
    if control:
        sections.append(Section("What you can do", tuple(control)))

    policy = _obj(notice, "policy")
    version = _int(policy, "version")
    if version is not None:
        expires = _str(policy, "expires")
        line = f"Policy version {version}" + (f", valid until {expires[:10]}" if expires else "")
        sections.append(Section("This notice", (line + ".",)))
    return sections


def notice_title(notice: Mapping[str, Any]) -> str:
    org = _str(notice, "organisation") or "Your organisation"
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


def notice_html(notice: Mapping[str, Any], widening: Sequence[str] = ()) -> str:
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
