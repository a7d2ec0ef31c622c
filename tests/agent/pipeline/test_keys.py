from __future__ import annotations

import pytest

from agent.events import KeyEvent
from agent.pipeline.keys import KeyMinimiser, char_class
from agent.pipeline.redact import Redactor
from overt.wire.records import KeyTimingRecord, Record, ShortcutRecord, TextSpanRecord, to_ms
from policies.model import KeyMode, Redaction

T = 1_800_000_000.0


def minimiser() -> KeyMinimiser:
    return KeyMinimiser(Redactor(Redaction()))


def typed(text: str, t0: float, step: float = 0.1) -> list[KeyEvent]:
    """Press and release for each character, ``step`` apart."""
    events = []
    for i, ch in enumerate(text):
        t = t0 + i * step
        key = "space" if ch == " " else ch
        events.append(KeyEvent(t, key, True, ch))
        events.append(KeyEvent(t + step / 2, key, False, ch))
    return events


def combo(mod: str, key: str, t0: float) -> list[KeyEvent]:
    return [
        KeyEvent(t0, mod, True),
        KeyEvent(t0 + 0.1, key, True, None),
        KeyEvent(t0 + 0.15, key, False, None),
        KeyEvent(t0 + 0.2, mod, False),
    ]


def run(km: KeyMinimiser, events: list[KeyEvent], mode: KeyMode) -> list[Record]:
    out: list[Record] = []
    for ev in events:
        out.extend(km.key(ev, mode))
    return out


HELLO_THEN_COPY = [*typed("hello world", T), *combo("ctrl", "c", T + 1.3)]


def test_text_mode_hello_world_then_copy() -> None:
    km = minimiser()
    out = run(km, HELLO_THEN_COPY, KeyMode.TEXT)
    assert out == [
        TextSpanRecord(to_ms(T), to_ms(T + 1.0), "hello world", 0),
        ShortcutRecord(to_ms(T + 1.4), "ctrl+c"),
    ]
    assert km.boundary() == []


def test_shortcuts_mode_hello_world_then_copy() -> None:
    out = run(minimiser(), HELLO_THEN_COPY, KeyMode.SHORTCUTS)
    tokens = ["<letter>"] * 5 + ["<space>"] + ["<letter>"] * 5
    expected: list[Record] = [
        ShortcutRecord(to_ms(T + i * 0.1), tok) for i, tok in enumerate(tokens)
    ]
    expected.append(ShortcutRecord(to_ms(T + 1.4), "ctrl+c"))
    assert out == expected


def test_timing_mode_hello_world_then_copy() -> None:
    out = run(minimiser(), HELLO_THEN_COPY, KeyMode.TIMING)
    assert out == [KeyTimingRecord(to_ms(ev.t), ev.pressed) for ev in HELLO_THEN_COPY]
    assert all(isinstance(r, KeyTimingRecord) for r in out)


def test_none_mode_records_nothing() -> None:
    km = minimiser()
    assert run(km, HELLO_THEN_COPY, KeyMode.NONE) == []
    assert km.boundary() == []


def test_pynput_shift_quirk_types_capital() -> None:
    events = [
        KeyEvent(T, "shift", True),
        KeyEvent(T + 0.1, "A", True, "A"),
        KeyEvent(T + 0.15, "a", False, "a"),
        KeyEvent(T + 0.2, "shift", False),
        *typed("b", T + 0.3),
    ]
    km = minimiser()
    assert run(km, events, KeyMode.TEXT) == []
    assert km.boundary() == [TextSpanRecord(to_ms(T + 0.1), to_ms(T + 0.3), "Ab", 0)]
    assert run(minimiser(), events, KeyMode.SHORTCUTS) == [
        ShortcutRecord(to_ms(T + 0.1), "<letter>"),
        ShortcutRecord(to_ms(T + 0.3), "<letter>"),
    ]


def test_backspace_edits_the_span() -> None:
    events = [
        *typed("helo", T),
        KeyEvent(T + 0.5, "backspace", True),
        KeyEvent(T + 0.55, "backspace", False),
        *typed("lo", T + 0.6),
    ]
    km = minimiser()
    assert run(km, events, KeyMode.TEXT) == []
    [span] = km.boundary()
    assert isinstance(span, TextSpanRecord)
    assert span.text == "hello"


def test_backspace_on_empty_span_is_a_key() -> None:
    out = run(minimiser(), [KeyEvent(T, "backspace", True)], KeyMode.TEXT)
    assert out == [ShortcutRecord(to_ms(T), "backspace")]


def test_fully_erased_span_leaves_nothing() -> None:
    bs = [KeyEvent(T + 1 + i * 0.1, "backspace", True) for i in range(2)]
    km = minimiser()
    assert run(km, [*typed("hi", T), *bs], KeyMode.TEXT) == []
    assert km.boundary() == []


def test_span_flushes_after_a_typing_pause() -> None:
    km = minimiser()
    run(km, typed("abc ", T), KeyMode.TEXT)
    last = T + 0.3
    assert km.next_due == pytest.approx(last + 1.0)
    assert km.poll(last + 0.9) == []
    assert km.poll(last + 1.0) == [TextSpanRecord(to_ms(T), to_ms(last), "abc ", 0)]
    assert km.next_due is None


def test_key_after_a_pause_starts_a_new_span() -> None:
    km = minimiser()
    out = run(km, [*typed("ab ", T), *typed("cd", T + 3)], KeyMode.TEXT)
    assert out == [TextSpanRecord(to_ms(T), to_ms(T + 0.2), "ab ", 0)]
    assert [r.text for r in km.boundary() if isinstance(r, TextSpanRecord)] == ["cd"]


def test_a_span_that_ends_inside_a_word_is_held_over_a_pause() -> None:
    km = minimiser()
    run(km, typed("Quarterly rep", T), KeyMode.TEXT)
    last = T + 1.2
    assert km.next_due == pytest.approx(last + 10)
    assert km.poll(last + 3) == []
    run(km, typed("ort ", last + 4), KeyMode.TEXT)
    [span] = km.poll(last + 4 + 0.3 + 1.0)
    assert isinstance(span, TextSpanRecord)
    assert (span.text, span.t) == ("Quarterly report ", to_ms(T))


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("write to alice@exa", "mple.com today", "write to [EMAIL] today"),
        ("write to alice", "@example.com today", "write to [EMAIL] today"),
        ("card 4111 ", "1111 1111 1111 ok", "card [CARD] ok"),
        ("token ghp_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8 ok", "token [SECRET] ok"),
        ("pay 5105 1051 0510 5100", " 12/27 thanks", "pay [CARD] 12/27 thanks"),
        ("pay 5105 1051 0510 5100 ", "12/27 thanks", "pay [CARD] 12/27 thanks"),
        ("pay 5105 1051 0510 5100 12/", "27 thanks", "pay [CARD] 12/27 thanks"),
        ("pay 4111 1111 1111 1111", " 12/27 thanks", "pay [CARD]/27 thanks"),
        ("to DE89 3704 ", "0044 0532 0130 00 ok", "to [IBAN] ok"),
        ("to GB82 WEST ", "1234 5698 7654 32 ok", "to [IBAN] ok"),
        ("to gb82 west ", "1234 5698 7654 32 ok", "to [IBAN] ok"),
        ("to GB82 ", "WEST 1234 5698 7654 32 ok", "to [IBAN] ok"),
        ("to NL91 ABNA 0417 ", "1643 00 ok", "to [IBAN] ok"),
        ("to MT84 MALT 0110 0001 2345 MTLC AST0 ", "01S ok", "to [IBAN] ok"),
    ],
)
def test_what_is_typed_in_two_goes_is_redacted_as_one(
    first: str, second: str, expected: str
) -> None:
    """A pause of a few seconds in the middle of an address, a card number or
    a token does not cut it into two spans that each escape redaction."""
    km = minimiser()
    out = run(km, typed(first, T, 0.05), KeyMode.TEXT)
    resume = T + 0.05 * len(first) + 4
    out += run(km, typed(second, resume, 0.05), KeyMode.TEXT)
    out += km.boundary()
    assert [r.text for r in out if isinstance(r, TextSpanRecord)] == [expected]


@pytest.mark.parametrize("text", ["GB82 ", "GB82 WEST ", "iban fr14 2004 1010 0505 0001 3M02 "])
def test_a_span_that_ends_after_iban_groups_is_held(text: str) -> None:
    km = minimiser()
    run(km, typed(text, T), KeyMode.TEXT)
    last = T + 0.1 * (len(text) - 1)
    assert km.next_due == pytest.approx(last + 10, abs=1e-3)
    assert km.poll(last + 9.9) == []


@pytest.mark.parametrize(
    "text",
    ["two words ", "a1b2 west ", "ab12 abcde ", "AB12 WEST ABCD EFGH IJKL MNOP QRST UVWX YZAB "],
)
def test_a_span_that_only_looks_a_little_like_iban_groups_flushes_on_the_short_pause(
    text: str,
) -> None:
    """Words and a space, no country and check digits, a group that is not
    four long, or more groups than an IBAN has."""
    km = minimiser()
    run(km, typed(text, T), KeyMode.TEXT)
    last = T + 0.1 * (len(text) - 1)
    assert km.next_due == pytest.approx(last + 1, abs=1e-3)
    assert [r.text for r in km.poll(last + 1.01) if isinstance(r, TextSpanRecord)] == [text]


def test_an_unfinished_word_is_flushed_after_the_long_pause() -> None:
    km = minimiser()
    run(km, typed("alice@exa", T), KeyMode.TEXT)
    assert km.poll(T + 0.8 + 9.9) == []
    assert [r.text for r in km.poll(T + 0.8 + 10) if isinstance(r, TextSpanRecord)] == ["alice@exa"]


@pytest.mark.parametrize("key", ["enter", "tab", "left", "escape"])
def test_non_printable_keys_end_the_span_and_are_recorded(key: str) -> None:
    events = [*typed("abc", T), KeyEvent(T + 0.5, key, True), KeyEvent(T + 0.55, key, False)]
    out = run(minimiser(), events, KeyMode.TEXT)
    assert out == [
        TextSpanRecord(to_ms(T), to_ms(T + 0.2), "abc", 0),
        ShortcutRecord(to_ms(T + 0.5), key),
    ]


def test_boundary_flushes_and_drop_discards() -> None:
    km = minimiser()
    run(km, typed("abc", T), KeyMode.TEXT)
    assert [type(r) for r in km.boundary()] == [TextSpanRecord]
    run(km, typed("secret plans", T + 5), KeyMode.TEXT)
    assert km.drop() == len("secret plans")
    assert km.boundary() == []


def test_span_is_redacted_at_flush() -> None:
    km = minimiser()
    events = [*typed("card 4111111111111111 ok", T, 0.05), KeyEvent(T + 2, "enter", True)]
    out = run(km, events, KeyMode.TEXT)
    assert out[0] == TextSpanRecord(to_ms(T), to_ms(T + 23 * 0.05), "card [CARD] ok", 1)


def test_digits_typed_in_two_goes_are_redacted_as_one() -> None:
    km = minimiser()
    run(km, typed("4111 1111", T), KeyMode.TEXT)
    assert km.poll(T + 3) == []  # held: the number may go on
    run(km, typed(" 1111 1111", T + 4), KeyMode.TEXT)
    [span] = km.boundary()
    assert isinstance(span, TextSpanRecord)
    assert span.text == "[CARD]"


def test_digit_tail_is_flushed_after_the_long_pause() -> None:
    km = minimiser()
    run(km, typed("room 1234", T), KeyMode.TEXT)
    assert km.next_due == pytest.approx(T + 0.8 + 10)
    assert [r.text for r in km.poll(T + 11) if isinstance(r, TextSpanRecord)] == ["room 1234"]


def test_modifier_state_follows_events_outside_capture() -> None:
    km = minimiser()
    km.track(KeyEvent(T, "ctrl", True))
    assert run(km, [KeyEvent(T + 0.1, "v", True)], KeyMode.TEXT) == [
        ShortcutRecord(to_ms(T + 0.1), "ctrl+v")
    ]
    km.track(KeyEvent(T + 0.2, "ctrl", False))
    assert run(km, typed("v", T + 0.3), KeyMode.TEXT) == []
    assert [r.text for r in km.boundary() if isinstance(r, TextSpanRecord)] == ["v"]


def test_combo_names_list_modifiers_in_a_fixed_order() -> None:
    events = [
        KeyEvent(T, "shift", True),
        KeyEvent(T, "ctrl", True),
        KeyEvent(T + 0.1, "T", True, "T"),
        KeyEvent(T + 0.2, "tab", True),
    ]
    assert run(minimiser(), events, KeyMode.SHORTCUTS) == [
        ShortcutRecord(to_ms(T + 0.1), "ctrl+shift+t"),
        ShortcutRecord(to_ms(T + 0.2), "ctrl+shift+tab"),
    ]


def test_shift_tab_in_shortcuts_mode() -> None:
    events = [KeyEvent(T, "shift", True), KeyEvent(T + 0.1, "tab", True)]
    assert run(minimiser(), events, KeyMode.SHORTCUTS) == [
        ShortcutRecord(to_ms(T + 0.1), "shift+tab")
    ]


@pytest.mark.parametrize(
    ("ch", "token"),
    [("a", "<letter>"), ("É", "<letter>"), ("7", "<digit>"), (" ", "<space>"), ("!", "<punct>")],
)
def test_char_classes(ch: str, token: str) -> None:
    assert char_class(ch) == token


def test_unknown_key_names_are_not_passed_through() -> None:
    out = run(minimiser(), [KeyEvent(T, "Weird Key!", True)], KeyMode.SHORTCUTS)
    assert out == [ShortcutRecord(to_ms(T), "<other>")]


def test_events_are_not_kept() -> None:
    km = minimiser()
    events = typed("abc", T)
    snapshot = list(events)
    run(km, events, KeyMode.TEXT)
    assert events == snapshot
