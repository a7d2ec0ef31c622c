"""Keystroke minimisation: from key events to the records a key mode allows.

This module owns how each ``KeyMode`` turns key presses into records. It does
not decide the mode (the decision engine does), and it never reads a clock:
times come from the events and from the ``now`` its caller passes.

Modes:

``none``
    nothing.
``timing``
    one ``KeyTimingRecord`` per press and per release; no key identity.
``shortcuts``
    one ``ShortcutRecord`` per press (releases are not recorded):
    combos with ctrl, alt or cmd as ``"ctrl+shift+c"`` (modifiers in the order
    ctrl, alt, shift, cmd; the key in lower case); non-printable keys by name
    (``"enter"``, ``"backspace"``, ``"left"``, ``"f5"``, ``"shift+tab"``);
    printable characters typed without ctrl/alt/cmd as a class token:
    ``<letter>``, ``<digit>``, ``<space>`` or ``<punct>``. Modifier presses
    alone are not recorded.
``text``
    printable characters typed without ctrl/alt/cmd are collected into a text
    span; everything else is recorded as in ``shortcuts``. Backspace removes
    the last character of the span (when the span is empty, it is recorded as
    a key). A span is flushed — redacted, then returned as a
    ``TextSpanRecord`` — on a typing pause of ``pause_s`` (1 s), a focus
    change or click (``boundary``), enter or tab, any other non-printable key
    (navigation moves the caret, so the span would no longer read as typed)
    and any ctrl/alt/cmd combo. A span is *dropped*, not flushed, by ``drop``
    (capture stopped, pause).

    A span that ends inside a word (its last character is not a space), in
    a digit and a space (``4111 ``), or in what may be the groups of an IBAN
    and a space (``GB82 WEST ``: two letters, two digits, then groups of four
    letters or digits) is held over a short pause, up to ``long_pause_s``
    (10 s), so that what is typed in two goes is redacted as one:
    ``alice@exa`` … ``mple.com``, ``alice`` … ``@example.com``,
    ``4111 `` … ``1111 1111 1111``, ``GB82 WEST `` … ``1234 5698 7654 32``.
    A span that ends after any other word and a space flushes on the short
    pause.

Modifier state (ctrl, alt, shift, cmd held) is tracked from every key event
given to ``track`` or ``key``, including events in windows that are not
captured: a modifier released elsewhere must not stay "held" here. Only the
modifier state is kept from those events. Releases of printable keys are
ignored, so pynput's ``shift+a`` quirk (press ``'A'``, release ``'a'``) does
not matter.
"""

from __future__ import annotations

import re

from agent.events import KeyEvent
from overt.wire.records import KeyTimingRecord, Record, ShortcutRecord, TextSpanRecord, to_ms
from policies.model import KeyMode

from .redact import Redactor

_MODIFIERS = ("ctrl", "alt", "shift", "cmd")
_SHORTCUT_MODIFIERS = frozenset(("ctrl", "alt", "cmd"))
_UNFINISHED = re.compile(r"(?:\S|\d )$")  # inside a word, or a digit group and its space
# The groups of an IBAN typed so far and a space: country, check digits, then
# at most 7 groups of four (34 characters at most in all).
_IBAN_GROUPS = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?: [A-Za-z0-9]{4}){0,7} $")
_IBAN_GROUPS_TAIL = 41  # the longest match and one character before it
_KEY_NAME = re.compile(r"^[a-z0-9_]{2,32}$")


def char_class(ch: str) -> str:
    """The class token that stands for a printable character."""
    if ch.isspace():
        return "<space>"
    if ch.isdigit():
        return "<digit>"
    if ch.isalpha():
        return "<letter>"
    return "<punct>"


def _printable(ev: KeyEvent) -> str | None:
    ch = ev.char
    if ch is not None and len(ch) == 1 and (ch.isprintable() or ch == " "):
        return ch
    if ev.key == "space":
        return " "
    if len(ev.key) == 1 and ev.key.isprintable():
        return ev.key
    return None


class KeyMinimiser:
    """Turns key events into records for one key mode at a time.

    Not thread-safe; one instance per pipeline. Methods return new records and
    never keep references to the caller's events.
    """

    __slots__ = ("_buf", "_end", "_held", "_long_pause", "_pause", "_redactor", "_start")

    def __init__(
        self, redactor: Redactor, *, pause_s: float = 1.0, long_pause_s: float = 10.0
    ) -> None:
        self._redactor = redactor
        self._pause = pause_s
        self._long_pause = long_pause_s
        self._held: set[str] = set()
        self._buf: list[str] = []
        self._start = 0.0
        self._end = 0.0

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    @redactor.setter
    def redactor(self, value: Redactor) -> None:
        self._redactor = value

    @property
    def span_pending(self) -> bool:
        return bool(self._buf)

    @property
    def next_due(self) -> float | None:
        """When ``poll`` may next flush the span (seconds), or None."""
        if not self._buf:
            return None
        if self._unfinished():
            return self._end + self._long_pause
        return self._end + self._pause

    def track(self, ev: KeyEvent) -> None:
        """Follow modifier state only (for events that are not captured)."""
        if ev.key in _MODIFIERS:
            if ev.pressed:
                self._held.add(ev.key)
            else:
                self._held.discard(ev.key)

    def key(self, ev: KeyEvent, mode: KeyMode) -> list[Record]:
        """Records for one key event under ``mode``."""
        key = ev.key
        if key in _MODIFIERS:
            self.track(ev)
            out: list[Record] = []
            if self._buf and mode is not KeyMode.TEXT:
                out.extend(self.boundary())
            if mode is KeyMode.TIMING:
                out.append(KeyTimingRecord(to_ms(ev.t), ev.pressed))
            return out
        if mode is KeyMode.TEXT:
            return self._text(ev)
        out = self.boundary() if self._buf else []
        if mode is KeyMode.TIMING:
            out.append(KeyTimingRecord(to_ms(ev.t), ev.pressed))
        elif mode is KeyMode.SHORTCUTS and ev.pressed:
            out.append(ShortcutRecord(to_ms(ev.t), self._shortcut(ev)))
        return out

    def boundary(self) -> list[Record]:
        """Flush the text span in progress (focus change, click, policy change)."""
        if not self._buf:
            return []
        text = "".join(self._buf)
        self._buf.clear()
        red = self._redactor.redact(text)
        return [TextSpanRecord(to_ms(self._start), to_ms(self._end), red.text, red.total)]

    def poll(self, now: float) -> list[Record]:
        """Flush the span when typing has paused long enough at ``now``."""
        if not self._buf:
            return []
        idle = now - self._end
        if idle < self._pause:
            return []
        if idle < self._long_pause and self._unfinished():
            return []
        return self.boundary()

    def _unfinished(self) -> bool:
        """Whether the span ends where what is being typed may go on: inside a
        word, after a digit group and its space, or after an IBAN's groups and
        a space."""
        if _UNFINISHED.search("".join(self._buf[-2:])) is not None:
            return True
        return _IBAN_GROUPS.search("".join(self._buf[-_IBAN_GROUPS_TAIL:])) is not None

    def drop(self) -> int:
        """Discard the span in progress; returns how many characters were dropped."""
        n = len(self._buf)
        self._buf.clear()
        return n

    def reset(self) -> None:
        """Forget everything, modifier state included (hooks stopped)."""
        self._buf.clear()
        self._held.clear()

    def _combo_prefix(self) -> str:
        return "".join(m + "+" for m in _MODIFIERS if m in self._held)

    def _shortcut(self, ev: KeyEvent) -> str:
        ch = _printable(ev)
        combo = not self._held.isdisjoint(_SHORTCUT_MODIFIERS)
        if ch is not None and not combo:
            return char_class(ch)
        name = ev.key.lower() if len(ev.key) == 1 else ev.key
        valid = name.isprintable() if len(name) == 1 else bool(_KEY_NAME.match(name))
        if not valid:
            name = "<other>"
        return self._combo_prefix() + name

    def _text(self, ev: KeyEvent) -> list[Record]:
        if not ev.pressed:
            return []
        if self._buf and ev.t - self._end >= self._pause:
            flushed = self.poll(ev.t)
            if flushed:
                return flushed + self._text(ev)
        combo = not self._held.isdisjoint(_SHORTCUT_MODIFIERS)
        if not combo:
            ch = _printable(ev)
            if ch is not None:
                if not self._buf:
                    self._start = ev.t
                self._buf.append(ch)
                self._end = ev.t
                return []
            if ev.key == "backspace" and self._buf and "shift" not in self._held:
                self._buf.pop()
                self._end = ev.t
                return []
        out = self.boundary()
        out.append(ShortcutRecord(to_ms(ev.t), self._shortcut(ev)))
        return out
