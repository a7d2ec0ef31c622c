"""Consent: what a policy captures, what the employee agreed to, and whether
that agreement still covers the policy in force.

This module owns:

- ``capture_surface(policy)``: a canonical, order-free description of
  everything a policy captures, as a frozenset of ``SurfaceItem``;
- ``ConsentRecord``: an answer (accepted or declined) to the notice of one
  policy version, carrying the surface it was given for;
- ``surface_widening(consented, current)``: the human-readable list of what
  the current policy captures beyond what was consented to (empty when the
  consent still covers it), for the tray's re-consent notice;

It does not own showing the notice, persisting the record, reading a clock or
the capture decision itself (``decision`` turns a record into a ``Reason``).

How the surface is compared
---------------------------
A surface is made of two kinds of items.

*Capturing* items say that something is captured, e.g. "typed text in apps
matching process name 'firefox'". Keystroke modes are cumulative: an app in
``text`` mode yields the ``timing``, ``shortcuts`` and ``text`` items, so a
policy that lowers the mode is a subset. Items that carry a size (screenshot
width, title detail, retention days) carry it in ``bound``; an item is covered
by a consented item with the same aspect, subject and detail and a bound at
least as large.

*Protective* items (aspect starting with ``without:``) say that something is
*not* captured although it otherwise might be: a never-capture entry, a title
rule, an actions-only app, a redaction rule. Removing one widens capture, so
every protective item of the consented surface must still be present, except
the protections of an app (title rules, actions only) that the current policy
no longer captures at all.

The consent covers the current policy iff both hold. App rules are described
by their identity matchers (``process_name=firefox``, ``exe_path=/usr/bin/xterm``),
not by their ids or display names, so renaming a rule does not ask for consent
again while adding a matcher does.

An allow rule that lists executable paths is described by those paths alone:
the rule captures nothing outside them, and its other values only narrow it, so
the paths are an upper bound of what it captures. Paths are kept as written
(case matters). A digest is not part of the surface: it is IT's check that the
file at a path is the program they meant, it changes with every update of that
program, and the employee agrees to capture in the program at that path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from policies.model import AppMatch, KeyMode, Policy, TitleAction

PROTECTIVE_PREFIX = "without:"


class SurfaceItem(NamedTuple):
    """One thing a policy captures (or, for ``without:`` aspects, withholds)."""

    aspect: str
    subject: str = ""
    detail: str = ""
    bound: int = 0


class TitleDetail(IntEnum):
    """How much of a window title an app's capture keeps (an item's bound)."""

    MASKED = 1
    FULL = 2


_KEY_ASPECTS = {
    KeyMode.TIMING: "keystrokes:timing",
    KeyMode.SHORTCUTS: "keystrokes:shortcuts",
    KeyMode.TEXT: "keystrokes:text",
}

#: A title rule's strength: a rule withholds its own action and every weaker one.
_TITLE_RULE_STRENGTH = ("mask", "drop", "skip")


def _subjects(match: AppMatch) -> list[str]:
    """The canonical identity matchers of a never-capture entry, where every
    value counts: the others lower-cased, executable paths as written."""
    out: list[str] = []
    for field, values in (
        ("process_name", match.process_names),
        ("wm_class", match.wm_classes),
        ("exe_name", match.exe_names),
        ("bundle_id", match.bundle_ids),
    ):
        for value in values:
            norm = normalise_identity(value, exe=field == "exe_name")
            if norm:
                out.append(f"{field}={norm}")
    out.extend(_path_subjects(match))
    return out


def _path_subjects(match: AppMatch) -> list[str]:
    return list(dict.fromkeys(f"exe_path={entry.path}" for entry in match.exe_paths))


def _captured_subjects(match: AppMatch) -> list[str]:
    """What an allow rule captures in: its executable paths when it lists any
    (its other values then only narrow them), else every value."""
    return _path_subjects(match) if match.exe_paths else _subjects(match)


def normalise_identity(value: str, *, exe: bool = False) -> str:
    """Lower-case an identity value; for executables keep the base name only."""
    if exe:
        value = value.replace("\\", "/").rsplit("/", 1)[-1]
    return value.strip().lower()


def capture_surface(policy: Policy) -> frozenset[SurfaceItem]:
    """Everything ``policy`` captures, canonically (see the module docstring)."""
    items: set[SurfaceItem] = set()
    for rule in policy.apps:
        cap = rule.capture
        for subject in _captured_subjects(rule.match):
            items.add(SurfaceItem("app", subject))
            for mode, aspect in _KEY_ASPECTS.items():
                if cap.keystrokes.rank >= mode.rank:
                    items.add(SurfaceItem(aspect, subject))
            if cap.mouse:
                items.add(SurfaceItem("mouse", subject))
            if cap.actions_only:
                items.add(SurfaceItem(PROTECTIVE_PREFIX + "actions_only", subject))
            else:
                if cap.screenshots.enabled:
                    items.add(SurfaceItem("screenshots", subject, bound=cap.screenshots.max_width))
                if cap.titles is TitleAction.KEEP:
                    items.add(SurfaceItem("titles", subject, bound=TitleDetail.FULL))
                elif cap.titles is TitleAction.MASK:
                    items.add(SurfaceItem("titles", subject, bound=TitleDetail.MASKED))
            for title_rule in rule.title_rules:
                strength = _TITLE_RULE_STRENGTH.index(title_rule.action)
                for action in _TITLE_RULE_STRENGTH[: strength + 1]:
                    items.add(
                        SurfaceItem(
                            PROTECTIVE_PREFIX + "title:" + action, subject, title_rule.pattern
                        )
                    )
    for denied in policy.never_capture:
        for subject in _subjects(denied.match):
            items.add(SurfaceItem(PROTECTIVE_PREFIX + "app", subject))
    for builtin in policy.redaction.builtin:
        items.add(SurfaceItem(PROTECTIVE_PREFIX + "redaction", builtin))
    for pattern in policy.redaction.patterns:
        items.add(SurfaceItem(PROTECTIVE_PREFIX + "redaction", pattern.name, pattern.pattern))
    items.add(SurfaceItem("retention_days", bound=policy.retention.days))
    for reader in policy.retention.readers:
        items.add(SurfaceItem("reader", reader))
    items.add(SurfaceItem("dataset_key", policy.dataset_key.key_id))
    return frozenset(items)


_PER_APP_PROTECTIONS = frozenset({PROTECTIVE_PREFIX + "actions_only"})
_TITLE_PROTECTION = PROTECTIVE_PREFIX + "title:"


def _is_protective(item: SurfaceItem) -> bool:
    return item.aspect.startswith(PROTECTIVE_PREFIX)


def surface_widening(
    consented: Iterable[SurfaceItem], current: Iterable[SurfaceItem]
) -> tuple[str, ...]:
    """What ``current`` captures beyond ``consented``, in words, sorted.

    Empty iff consent given for ``consented`` covers ``current``.
    """
    current = frozenset(current)
    consented_bounds: dict[tuple[str, str, str], int] = {}
    consented_protective: list[SurfaceItem] = []
    for item in consented:
        if _is_protective(item):
            consented_protective.append(item)
            continue
        key = (item.aspect, item.subject, item.detail)
        consented_bounds[key] = max(item.bound, consented_bounds.get(key, item.bound))
    out: list[str] = []
    captured_apps: set[str] = set()
    for item in current:
        if _is_protective(item):
            continue
        if item.aspect == "app":
            captured_apps.add(item.subject)
        had = consented_bounds.get((item.aspect, item.subject, item.detail))
        if had is None or had < item.bound:
            out.append(_describe_gain(item, had))
    for item in consented_protective:
        if item in current:
            continue
        # A protection of one app (title rule, actions only) no longer matters
        # once that app is not captured at all.
        per_app = item.aspect in _PER_APP_PROTECTIONS or item.aspect.startswith(_TITLE_PROTECTION)
        if per_app and item.subject not in captured_apps:
            continue
        out.append(_describe_loss(item))
    return tuple(sorted(out))


def surface_covers(consented: Iterable[SurfaceItem], current: Iterable[SurfaceItem]) -> bool:
    """Whether consent given for ``consented`` covers a policy capturing ``current``."""
    return not surface_widening(consented, current)


_SUBJECT_LABELS = {
    "process_name": "process name",
    "wm_class": "window class",
    "exe_name": "executable",
    "bundle_id": "bundle id",
    "exe_path": "executable path",
}


def _describe_subject(subject: str) -> str:
    field, _, value = subject.partition("=")
    return f"apps matching {_SUBJECT_LABELS.get(field, field)} '{value}'"


_GAIN_WORDS = {
    "keystrokes:timing": "keystroke timing",
    "keystrokes:shortcuts": "keyboard shortcuts",
    "keystrokes:text": "typed text",
    "mouse": "mouse clicks and movement",
    "app": "app names and window positions",
}


def _describe_gain(item: SurfaceItem, had: int | None) -> str:
    aspect, subject, bound = item.aspect, item.subject, item.bound
    if aspect == "retention_days":
        was = "" if had is None else f" (was {had})"
        return f"data is kept for {bound} days{was}"
    if aspect == "reader":
        return f"data can be read by {subject}"
    if aspect == "dataset_key":
        return f"data is sealed to a new dataset key '{subject}'"
    where = _describe_subject(subject)
    if aspect == "screenshots":
        was = "" if had is None else f" (was {had} px)"
        return f"screenshots up to {bound} px wide in {where}{was}"
    if aspect == "titles":
        what = "full window titles" if bound >= TitleDetail.FULL else "masked window titles"
        return f"{what} in {where}"
    return f"{_GAIN_WORDS.get(aspect, aspect)} in {where}"


def _describe_loss(item: SurfaceItem) -> str:
    aspect = item.aspect.removeprefix(PROTECTIVE_PREFIX)
    if aspect == "redaction":
        name = item.subject if not item.detail else f"{item.subject} (/{item.detail}/)"
        return f"typed text is no longer redacted for {name}"
    where = _describe_subject(item.subject)
    if aspect == "app":
        return f"{where} are no longer on the never-capture list"
    if aspect == "actions_only":
        return f"{where} are no longer limited to your own actions"
    if aspect.startswith("title:"):
        verb = {"mask": "masked", "drop": "dropped", "skip": "skipped"}[aspect[6:]]
        subject = "window titles" if aspect != "title:skip" else "windows"
        return f"{subject} matching /{item.detail}/ in {where} are no longer {verb}"
    return f"{aspect} no longer withheld in {where}"


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """An employee's answer to the notice of one policy version.

    ``surface`` is the ``capture_surface`` of the policy the notice was
    generated from; ``at`` is when the answer was given (epoch seconds).
    """

    accepted: bool
    policy_version: int
    surface: frozenset[SurfaceItem]
    at: float

    @classmethod
    def accept(cls, policy: Policy, at: float) -> ConsentRecord:
        return cls(True, policy.version, capture_surface(policy), at)

    @classmethod
    def decline(cls, policy: Policy, at: float) -> ConsentRecord:
        return cls(False, policy.version, capture_surface(policy), at)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form, for whoever persists consent."""
        return {
            "accepted": self.accepted,
            "policy_version": self.policy_version,
            "at": self.at,
            "surface": sorted([list(item) for item in self.surface]),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ConsentRecord:
        """The inverse of ``to_dict``; raises ValueError on a malformed record."""
        try:
            raw_items = data["surface"]
            if not isinstance(raw_items, list):
                raise TypeError("surface must be a list")
            items = frozenset(
                SurfaceItem(str(a), str(s), str(d), int(b)) for a, s, d, b in raw_items
            )
            accepted, version, at = data["accepted"], data["policy_version"], data["at"]
            if not isinstance(accepted, bool) or not isinstance(version, int):
                raise TypeError("accepted must be a bool and policy_version an int")
            if not isinstance(at, int | float):
                raise TypeError("at must be a number")
            return cls(accepted, version, items, float(at))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed consent record: {exc}") from exc
