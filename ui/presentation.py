"""The tray's presentation core: agent state in, what a person sees out.

This module owns, without Qt and without a clock of its own:

- :func:`present`: a :class:`~overt.wire.control_results.Status` (or :class:`Unreachable`
  when no agent answers) becomes a :class:`TrayView` — which icon, the
  tooltip, the headline sentence, and the menu entries with their labels and
  whether each is enabled;
- :class:`ResumeAnnouncer`: watches successive states and says when to show
  "capture resumes in 1 minute" and "capture resumed" (only for a pause that
  ends by itself, not for one the employee ended);
- :class:`ConsentPrompter`: says when to open the consent notice on its own
  (once per policy version per tray session, when the agent says an answer is
  needed);
- :func:`next_poll_ms`: when to ask the agent again, so the countdown and
  the announcements happen on time;
- the headline, for the tray (:func:`headline`) and for the terminal
  (:func:`terminal_headline`, what ``overt status`` and the other commands
  print first), so that what capture is doing is worded in one place;
- small wording helpers (:func:`human_bytes`, :func:`minutes_phrase`).

Time comes only from the agent's ``now_ms`` in each status, so every answer
here is a pure function of its inputs; the time of day shown ("at 10:42")
uses the ``tz`` passed in (local time when None).

Icons, as the employee sees them:

==============  ==========================================================
``CAPTURING``   a red dot: recording in the app in front of you
``ARMED``       a red ring: capture is on, but not in the app in front
``PAUSED``      amber pause bars: paused, resumes by itself
``BLOCKED``     grey, struck through: not capturing (the tooltip says why)
``ATTENTION``   grey, struck through, with an amber badge: not capturing
                until you answer the capture notice
``NOT_RUNNING`` a dashed grey ring: no agent is running, nothing is captured
==============  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum

from overt.wire.control_results import Status

#: Shorter pause choices offered below the policy's maximum.
SHORTER_PAUSES = (5, 15, 30, 60)
#: The "discard the last N minutes" choices.
DISCARD_CHOICES = (5, 15)
#: How long before an automatic resume the tray announces it.
RESUME_WARNING_MS = 60_000


class IconKind(StrEnum):
    CAPTURING = "capturing"
    ARMED = "armed"
    PAUSED = "paused"
    BLOCKED = "blocked"
    ATTENTION = "attention"
    NOT_RUNNING = "not_running"


@dataclass(frozen=True, slots=True)
class Unreachable:
    """No agent answers. ``why`` is for the tooltip ("no agent at …").

    ``starting``: the tray has just started an agent and is waiting for it.
    ``can_start``: the tray knows how to start one (it was given the agent's
    arguments), so "Start the agent" is offered.
    """

    why: str = ""
    starting: bool = False
    can_start: bool = False


AgentState = Status | Unreachable


@dataclass(frozen=True, slots=True)
class MenuEntry:
    """One line of the tray menu; ``id`` is stable across updates.

    ``id`` is ``"-"`` plus a number for separators. Entries whose id holds a
    colon carry a number: ``pause:30``, ``discard:5``.
    """

    id: str
    label: str = ""
    enabled: bool = True

    @property
    def separator(self) -> bool:
        return self.id.startswith("-")

    @property
    def command(self) -> str:
        return self.id.partition(":")[0]

    @property
    def minutes(self) -> int | None:
        _, _, number = self.id.partition(":")
        return int(number) if number else None


@dataclass(frozen=True, slots=True)
class TrayView:
    """What the tray shows. ``detail`` is one smaller line under the headline
    in the menu (why no agent answers, or the app being recorded)."""

    icon: IconKind
    headline: str
    tooltip: str
    menu: tuple[MenuEntry, ...]
    detail: str = ""

    @property
    def menu_pause_max(self) -> int | None:
        """The longest pause offered (the one-click choice), if any."""
        minutes = [e.minutes for e in self.menu if e.command == "pause" and e.minutes]
        return max(minutes) if minutes else None

    def entry(self, entry_id: str) -> MenuEntry:
        for entry in self.menu:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)


@dataclass(frozen=True, slots=True)
class Notification:
    title: str
    message: str


# -- wording ----------------------------------------------------------------


def human_bytes(n: int) -> str:
    """``1536`` → ``"1.5 KiB"``: one decimal below ten units, none above."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def minutes_phrase(minutes: int) -> str:
    """``1`` → ``"1 minute"``, ``30`` → ``"30 minutes"``, ``120`` → ``"2 hours"``."""
    if minutes >= 60 and minutes % 60 == 0:
        hours = minutes // 60
        return "1 hour" if hours == 1 else f"{hours} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def minutes_left(ms: int) -> int:
    """Whole minutes left, rounded up: a pause with 10 s left has 1 minute left."""
    return max(1, math.ceil(ms / 60_000))


def _clock(ms: int, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=tz).strftime("%H:%M")


def _day(iso: str) -> str:
    return iso[:10] if len(iso) >= 10 else iso


#: Why capture is off for every window, in words, by the agent's reason code.
_BLOCKED_WORDS = {
    "no_consent": "you have not answered the notice yet",
    "consent_declined": "you declined the notice",
    "consent_outdated": "the new policy captures more and needs your answer",
    "no_policy": "no policy is installed",
    "policy_expired": "the policy has expired",
    "policy_invalid": "the policy is not valid",
    "self_test_failed": "the privacy self-test failed",
    "spool_full": "the local store is full until uploads catch up",
}

#: Capture is on, but not for the window in front.
_ARMED = {"not_allowed", "never_captured", "title_skipped", "no_window"}

_CONSENT_REASONS = {"no_consent", "consent_outdated"}


def headline(status: Status, tz: tzinfo | None = None) -> str:
    """The one sentence that says whether capture is on, and why not."""
    reason = status.reason
    if status.paused or reason == "paused":
        if status.paused_until_ms is None or not status.paused:
            return "Paused"
        left = minutes_left(status.pause_remaining_ms)
        return f"Paused — resumes in {left} min (at {_clock(status.paused_until_ms, tz)})"
    if reason == "capturing" or (status.capturing and reason not in _ARMED):
        return "Capturing in allow-listed apps"
    if reason in _ARMED:
        app = status.current_app.name if status.current_app else None
        if reason == "not_allowed" and app:
            return f"Capturing in allow-listed apps; not in {app}"
        if reason == "never_captured" and app:
            return f"Capturing in allow-listed apps; never in {app}"
        if reason == "title_skipped":
            return "Capturing in allow-listed apps; not this window"
        return "Capturing in allow-listed apps"
    if reason == "exempt":
        ends = sorted(_day(e.expires) for e in status.exemptions if e.expires)
        return "Not capturing: you are exempt" + (f" until {ends[-1]}" if ends else "")
    if reason == "spool_full" and status.problem:
        # The agent says which: a full disk, or the spool's own budget.
        return f"Not capturing: {status.problem}"
    words = _BLOCKED_WORDS.get(reason)
    if words is None:
        words = status.reason_text or reason.replace("_", " ")
        if words.lower().startswith("not capturing"):
            return words
    return f"Not capturing: {words}"


def terminal_headline(status: Status, tz: tzinfo | None = None) -> str:
    """The same, as ``overt status`` prints it: a full sentence that names the
    app in front, and the agent's own words for why capture is off."""
    if status.reason == "paused" and status.paused:
        assert status.paused_until_ms is not None
        left = minutes_left(status.pause_remaining_ms)
        until = _clock(status.paused_until_ms, tz)
        return f"Paused for {left} more {'minute' if left == 1 else 'minutes'} (until {until})."
    if status.capturing:
        app = status.current_app
        if app is None:
            return "Capturing in allow-listed apps."
        if app.allowed:
            return f"Capturing in {app.name} (allowed)."
        return f"Capture is on, but not in {app.name}: it is not an allow-listed app."
    return f"Not capturing: {status.reason_text or status.reason}."


def icon_for(status: Status) -> IconKind:
    if status.paused or status.reason == "paused":
        return IconKind.PAUSED
    if status.reason == "capturing" or (status.capturing and status.reason not in _ARMED):
        return IconKind.CAPTURING
    if status.reason in _ARMED:
        return IconKind.ARMED
    if status.consent_needed or status.reason in _CONSENT_REASONS:
        return IconKind.ATTENTION
    return IconKind.BLOCKED


def details(status: Status) -> list[str]:
    """Secondary lines for the tooltip: the app in front, uploads, the policy."""
    lines = []
    if status.reason == "capturing" and status.current_app is not None:
        lines.append(f"Recording {status.current_app.name} now")
    upload = status.upload
    if upload is not None:
        if upload.state == "not_enrolled":
            lines.append("Nothing is uploaded: this machine is not enrolled")
        else:
            line = f"Uploaded today: {human_bytes(upload.today_bytes)}"
            if upload.daily_budget:
                line += f" of {human_bytes(upload.daily_budget)}"
            lines.append(line)
            if upload.state in {"waiting", "blocked"} and upload.why:
                lines.append(f"Upload {upload.state}: {upload.why}")
    if status.spool is not None and status.spool.batches:
        lines.append(
            f"Waiting on this machine: {status.spool.batches} "
            f"{'batch' if status.spool.batches == 1 else 'batches'} "
            f"({human_bytes(status.spool.bytes)})"
        )
    if status.policy is not None:
        who = f" of {status.policy.organisation}" if status.policy.organisation else ""
        lines.append(f"Policy {status.policy.version}{who}")
    return lines


# -- the menu ---------------------------------------------------------------


def pause_choices(max_minutes: int) -> tuple[int, ...]:
    """The policy's maximum first (the one-click choice), then shorter ones."""
    shorter = sorted((m for m in SHORTER_PAUSES if m < max_minutes), reverse=True)
    return (max_minutes, *shorter)


def _menu(state: AgentState, head: str) -> tuple[MenuEntry, ...]:
    running = isinstance(state, Status)
    entries = [MenuEntry("status", head, enabled=False), MenuEntry("-1")]
    if isinstance(state, Unreachable):
        if state.can_start:
            entries.append(MenuEntry("start_agent", "Start the agent", not state.starting))
            entries.append(MenuEntry("-2"))
        max_minutes = 30
        paused = False
    else:
        if state.policy is not None or state.consent_needed:
            label = "Answer the capture notice…" if state.consent_needed else "The capture notice…"
            entries.append(MenuEntry("consent", label))
            entries.append(MenuEntry("-2"))
        max_minutes = state.pause_max_minutes
        paused = state.paused
    for minutes in pause_choices(max_minutes):
        entries.append(
            MenuEntry(
                f"pause:{minutes}", f"Pause for {minutes_phrase(minutes)}", running and not paused
            )
        )
    entries.append(MenuEntry("resume", "Resume now", running and paused))
    entries.append(MenuEntry("-3"))
    for minutes in DISCARD_CHOICES:
        entries.append(
            MenuEntry(f"discard:{minutes}", f"Discard the last {minutes} minutes", running)
        )
    entries.append(MenuEntry("-4"))
    entries.append(MenuEntry("captured", "What is captured…", running))
    entries.append(MenuEntry("exemption", "Request an exemption…", running))
    entries.append(MenuEntry("-5"))
    entries.append(MenuEntry("quit", "Quit"))
    return tuple(entries)


def present(state: AgentState, tz: tzinfo | None = None) -> TrayView:
    """What the tray shows for ``state``."""
    if isinstance(state, Unreachable):
        if state.starting:
            head = "Not capturing: starting the agent…"
        else:
            head = "Not capturing: the agent is not running"
        why = state.why if state.why and not state.starting else ""
        tip = "\n".join([head, why] if why else [head])
        return TrayView(IconKind.NOT_RUNNING, head, tip, _menu(state, head), detail=why)
    head = headline(state, tz)
    lines = details(state)
    tooltip = "\n".join([head, *lines])
    return TrayView(icon_for(state), head, tooltip, _menu(state, head), lines[0] if lines else "")


# -- what happens over time ---------------------------------------------------


class ResumeAnnouncer:
    """Announces an automatic resume shortly before it and when it happens.

    Feed it every state the tray receives, in order. A warning is given once
    per pause end, and only for a pause that was seen with more than
    ``warn_before_ms`` left (a one-minute pause does not warn as it starts).
    "Capture resumed" is said when a pause ends at or after its planned end;
    a pause the employee ended early is not announced.
    """

    def __init__(self, warn_before_ms: int = RESUME_WARNING_MS, tz: tzinfo | None = None) -> None:
        self._warn_before_ms = warn_before_ms
        self._tz = tz
        self._until: int | None = None
        self._long_enough = False
        self._warned = False

    def observe(self, state: AgentState) -> list[Notification]:
        if not isinstance(state, Status):
            return []  # no agent: the pause may still be running there
        until: int | None = state.paused_until_ms
        if state.paused and until is not None:
            if until != self._until:
                self._until, self._warned = until, False
                self._long_enough = False
            remaining = state.pause_remaining_ms
            if remaining > self._warn_before_ms:
                self._long_enough = True
            elif self._long_enough and not self._warned:
                self._warned = True
                return [
                    Notification(
                        "Capture resumes soon",
                        f"Capture in allow-listed apps resumes in "
                        f"{minutes_phrase(minutes_left(remaining))} "
                        f"(at {_clock(until, self._tz)}).",
                    )
                ]
            return []
        until, self._until = self._until, None
        if until is None or state.now_ms < until:
            return []
        if state.capturing or state.reason in _ARMED or state.reason == "capturing":
            message = "The pause is over: capturing in allow-listed apps again."
        else:
            message = f"The pause is over. {headline(state, self._tz)}."
        return [Notification("Capture resumed", message)]


class ConsentPrompter:
    """Says when to open the capture notice without being asked.

    Once per policy version per tray session: if the employee closes the
    notice without answering, the tray does not push it again (the menu still
    offers it, and the icon keeps its badge).
    """

    def __init__(self) -> None:
        self._prompted: set[int] = set()

    def observe(self, state: AgentState) -> bool:
        if not isinstance(state, Status) or not state.consent_needed:
            return False
        version = state.policy.version if state.policy is not None else 0
        if version in self._prompted:
            return False
        self._prompted.add(version)
        return True


def next_poll_ms(
    state: AgentState, interval_ms: int, warn_before_ms: int = RESUME_WARNING_MS
) -> int:
    """Milliseconds until the tray should ask the agent again.

    At most ``interval_ms``; sooner when a pause is about to reach its
    warning point or its end, so both announcements are on time.
    """
    if not isinstance(state, Status) or not state.paused:
        return interval_ms
    remaining = state.pause_remaining_ms
    candidates = [interval_ms, remaining + 100]
    if remaining > warn_before_ms:
        candidates.append(remaining - warn_before_ms + 100)
    return max(50, min(candidates))
