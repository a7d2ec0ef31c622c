"""Card numbers inside longer digit runs, and IBANs (``agent.pipeline.redact``)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.pipeline.redact import (
    CARD_MAX,
    CARD_MIN,
    IBAN_LENGTHS,
    Redactor,
    iban_ok,
    luhn_ok,
    luhn_stretches,
)
from policies.model import Redaction

ALL = Redactor(Redaction())
CARDS_ONLY = Redactor(Redaction(builtin=("card",)))

_RUN = re.compile(r"\d(?:[ .-]?\d)*")


def passing_stretches(digits: str) -> list[tuple[int, int]]:
    """Every stretch of 13-19 digits that passes Luhn, by brute force."""
    return [
        (s, e)
        for s in range(len(digits))
        for e in range(s + CARD_MIN, min(s + CARD_MAX, len(digits)) + 1)
        if luhn_ok(digits[s:e])
    ]


def union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans that share an index merged; spans that only touch kept apart."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def reference_cards(text: str) -> str:
    """What the card class should make of text without letters: each run's
    passing stretches, merged, replaced from first to last digit."""
    out, done = [], 0
    for m in _RUN.finditer(text):
        at = [m.start() + i for i, ch in enumerate(m.group()) if ch.isdigit()]
        if m.start() and text[m.start() - 1] == "+" and len(at) <= 15:
            continue
        digits = "".join(str(int(text[i])) for i in at)  # full-width digits too
        for s, e in union(passing_stretches(digits)):
            out += [text[done : at[s]], "[CARD]"]
            done = at[e - 1] + 1
    return "".join(out) + text[done:]


def with_check_digit(body: str) -> str:
    return next(body + c for c in "0123456789" if luhn_ok(body + c))


# (name, text, expected)
CARDS = [
    ("leak: expiry after a spaced card", "4111 1111 1111 1111 12/27", "[CARD]/27"),
    ("leak: cvc after a card", "4111111111111111 123", "[CARD]3"),
    ("expiry kept when no stretch runs through it", "5105 1051 0510 5100 12/27", "[CARD] 12/27"),
    ("cvc kept when no stretch runs through it", "6011111111111117 123", "[CARD] 123"),
    ("a slash ends the run", "4111-1111-1111-1111/12", "[CARD]/12"),
    ("digits before the card kept", "9 4111 1111 1111 1111", "9 [CARD]"),
    ("13 digits", "visa 4222222222222", "visa [CARD]"),
    ("15 digits amex", "amex 3782 822463 10005", "amex [CARD]"),
    ("15 digits amex plain", "371449635398431", "[CARD]"),
    ("16 digits visa", "4012 8888 8888 1881", "[CARD]"),
    ("16 digits mastercard dashed", "5555-5555-5555-4444", "[CARD]"),
    ("16 digits dotted", "4111.1111.1111.1111", "[CARD]"),
    ("16 digits mixed separators", "4111 1111-1111.1111", "[CARD]"),
    ("19 digits", "6205 5000 0000 0000 004", "[CARD]"),
    ("19 digits plain", "4000000000000000006", "[CARD]"),
    ("a card inside a 25-digit run", "3799510510510510510040599", "3799[CARD]40599"),
    ("a card typed straight into the expiry", "41111111111111111227123", "[CARD]23"),
    ("adjacent cards a stretch runs across", "4111111111111111 5555555555554444", "[CARD]"),
    ("adjacent cards that only touch", "4502675019434855 5506052200349891", "[CARD] [CARD]"),
    ("two cards apart", "4111111111111111, 5555555555554444", "[CARD], [CARD]"),
    ("after a dash", "ID-4111111111111111", "ID-[CARD]"),
    ("after letters", "visa4111111111111111", "visa[CARD]"),
    ("full-width digits", "\uff14" + "\uff11" * 15, "[CARD]"),
    ("one digit wrong still has a stretch that passes", "4111 1111 1111 1112", "411[CARD]"),
    ("16 digits after + are not a phone number", "+4111111111111111", "+[CARD]"),
]

# (name, text): not a card (the card class leaves them; ``phone`` may not).
NOT_CARDS = [
    ("16 digits, no stretch passes", "4111 1111 1111 1113"),
    ("16 digits plain, no stretch passes", "1234567812345678"),
    ("12 digits", "1234 5678 9012"),
    ("dates", "from 2024-01-15 to 15.01.2024"),
    ("expiry and cvc alone", "12/27 123"),
    ("amounts", "1500 2300 4100"),
    ("two separators in a row end a run", "4111 1111  1111 1111"),
    ("a space and a dash end a run", "4111 1111 - 1111 1111"),
]

# (name, text, expected): what the phone rule makes of them, nothing more.
PHONES_AND_DATES = [
    ("e164 with a passing stretch", "+49 151 23456704", "[PHONE]"),
    ("e164 spaced with a passing stretch", "call +86 138 0013 8002 now", "call [PHONE] now"),
    ("phone then date", "call 555-123-4567 on 2024-01-15", "call [PHONE] on 2024-01-15"),
    ("uk landline then date", "020 7946 0958, 15.01.2024", "[PHONE], 15.01.2024"),
    ("time and date", "10:30 on 2024-01-15", "10:30 on 2024-01-15"),
]

IBANS = [
    ("de spaced", "DE89 3704 0044 0532 0130 00", "[IBAN]"),
    ("de unbroken", "DE89370400440532013000", "[IBAN]"),
    (
        "de lower case in a sentence",
        "pay to de89 3704 0044 0532 0130 00 by friday",
        "pay to [IBAN] by friday",
    ),
    ("gb spaced", "GB82 WEST 1234 5698 7654 32", "[IBAN]"),
    ("gb unbroken", "GB82WEST12345698765432", "[IBAN]"),
    ("gb lower case", "gb82 west 1234 5698 7654 32.", "[IBAN]."),
    ("fr spaced", "FR14 2004 1010 0505 0001 3M02 606", "[IBAN]"),
    ("fr unbroken", "FR1420041010050500013M02606", "[IBAN]"),
    ("nl spaced", "NL91 ABNA 0417 1643 00", "[IBAN]"),
    ("nl unbroken", "NL91ABNA0417164300", "[IBAN]"),
    ("es spaced", "ES91 2100 0418 4502 0005 1332", "[IBAN]"),
    ("es unbroken", "ES9121000418450200051332", "[IBAN]"),
    ("norway, the shortest", "NO93 8601 1117 947", "[IBAN]"),
    ("malta, letters in the middle", "MT84 MALT 0110 0001 2345 MTLC AST0 01S", "[IBAN]"),
    ("unbroken and longer than the country's length", "DE89370400440532013000123", "[IBAN]123"),
    ("groups then more digits", "ES91 2100 0418 4502 0005 1332 1234", "[IBAN] 1234"),
    ("an iban then a card", "DE89 3704 0044 0532 0130 00 4111 1111 1111 1111", "[IBAN] [CARD]"),
    ("kosovo", "XK05 1212 0123 4567 8906", "[IBAN]"),
    ("a code not in the registry", "AA48 1212 0123 4567 8906", "[IBAN]"),
    ("a code not in the registry, unbroken", "AA481212012345678906", "[IBAN]"),
]

NOT_IBANS = [
    ("de, one check digit wrong", "DE88 3704 0044 0532 0130 00"),
    ("de unbroken, one check digit wrong", "DE88370400440532013000"),
    ("gb, one bban digit wrong", "GB82 WEST 1234 5698 7654 33"),
    ("es, two digits swapped", "ES91 2100 0418 4502 0005 3132"),
    ("check digits 00", "GB00 WEST 1234 5698 7654 32"),
    ("a word and a number", "AB12 CDEF GHIJ KLMN"),
    ("a postcode", "the CV22 7AB office"),
    ("a product code", "SKU ab12cd34ef56gh78"),
]


def _ids(cases: Sequence[tuple[str, ...]]) -> list[str]:
    return [c[0] for c in cases]


@pytest.mark.parametrize(("name", "text", "expected"), CARDS, ids=_ids(CARDS))
def test_cards_are_redacted_wherever_they_are_in_a_run(name: str, text: str, expected: str) -> None:
    out = ALL.redact(text)
    assert out.text == expected
    assert dict(out.counts) == {"card": expected.count("[CARD]")}


@pytest.mark.parametrize(("name", "text", "expected"), CARDS, ids=_ids(CARDS))
def test_the_card_class_agrees_with_the_brute_force_on_every_case(
    name: str, text: str, expected: str
) -> None:
    """On every case above (digit runs without letters or ``+``, at least)
    the card class replaces the union of stretches that pass, found by
    trying each one."""
    if not re.search(r"[A-Za-z+]", text):
        assert CARDS_ONLY.redact(text).text == reference_cards(text)


@pytest.mark.parametrize(("name", "text"), NOT_CARDS, ids=_ids(NOT_CARDS))
def test_numbers_that_are_not_cards_stay(name: str, text: str) -> None:
    out = CARDS_ONLY.redact(text)
    assert (out.text, out.total) == (text, 0)


def test_the_16_digit_numbers_that_stay_have_no_stretch_that_passes() -> None:
    for text in ("4111 1111 1111 1113", "1234567812345678"):
        digits = text.replace(" ", "")
        assert not luhn_ok(digits)
        assert passing_stretches(digits) == []


@pytest.mark.parametrize(("name", "text", "expected"), PHONES_AND_DATES, ids=_ids(PHONES_AND_DATES))
def test_phone_numbers_and_dates_are_not_eaten_as_cards(
    name: str, text: str, expected: str
) -> None:
    assert ALL.redact(text).text == expected
    assert "card" not in ALL.redact(text).counts


def test_the_e164_numbers_above_do_have_a_stretch_that_passes() -> None:
    """So the phone rule, not luck, is what keeps them whole."""
    for digits in ("4915123456704", "8613800138002"):
        assert passing_stretches(digits)


@pytest.mark.parametrize(("name", "text", "expected"), IBANS, ids=_ids(IBANS))
def test_ibans_are_redacted(name: str, text: str, expected: str) -> None:
    out = ALL.redact(text)
    assert out.text == expected
    assert out.counts["iban"] == 1


@pytest.mark.parametrize(("name", "text"), NOT_IBANS, ids=_ids(NOT_IBANS))
def test_what_fails_the_iban_check_stays(name: str, text: str) -> None:
    out = ALL.redact(text)
    assert (out.text, out.total) == (text, 0)


def test_only_registry_countries_keep_a_mistyped_iban_from_the_card_class() -> None:
    """For two letters the registry does not know, the shape is too loose to
    hold back a card: the digits are scanned like any others."""
    assert ALL.redact("AA49 1212 0123 4567 8906").text == "AA4[CARD]"
    assert ALL.redact("DE88 3704 0044 0532 0130 00").text == "DE88 3704 0044 0532 0130 00"


def test_ibans_have_a_switch_of_their_own() -> None:
    assert Redactor(Redaction(builtin=("iban",))).redact("DE89370400440532013000").text == "[IBAN]"
    assert "iban" in Redaction().builtin
    kept = Redactor(Redaction(builtin=("email",))).redact("DE89370400440532013000")
    assert kept.text == "DE89370400440532013000"


def test_iban_registry_lengths() -> None:
    assert len(IBAN_LENGTHS) == 89
    assert {IBAN_LENGTHS[c] for c in ("DE", "GB", "FR", "NL", "ES")} == {22, 27, 18, 24}
    assert min(IBAN_LENGTHS.values()) == 15
    assert max(IBAN_LENGTHS.values()) == 33


def test_iban_check() -> None:
    assert iban_ok("GB82WEST12345698765432")
    assert iban_ok("gb82west12345698765432")
    assert not iban_ok("GB82WEST12345698765433")
    assert not iban_ok("GB82 WEST 1234 5698 7654 32")


# -- properties ---------------------------------------------------------------

_SEPARATED = st.text(alphabet="0123456789 .-", max_size=30)


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    """A Luhn-valid number of 13-19 digits."""
    n = draw(st.integers(CARD_MIN, CARD_MAX))
    return with_check_digit(draw(st.text(alphabet="0123456789", min_size=n - 1, max_size=n - 1)))


@st.composite
def typed_cards(draw: st.DrawFn) -> tuple[str, str]:
    """A card number and how it was typed: groups joined by single separators."""
    digits = draw(card_numbers())
    seps = draw(
        st.lists(
            st.sampled_from(["", "", " ", "-", "."]),
            min_size=len(digits) - 1,
            max_size=len(digits) - 1,
        )
    )
    return digits, digits[0] + "".join(s + d for s, d in zip(seps, digits[1:], strict=True))


@given(typed_cards(), _SEPARATED, _SEPARATED)
def test_a_card_among_any_digits_never_comes_out(
    card: tuple[str, str], before: str, after: str
) -> None:
    digits, typed = card
    out = ALL.redact(before + typed + after).text
    assert typed not in out
    for m in _RUN.finditer(out):
        assert digits not in re.sub(r"\D", "", m.group())


@given(st.text(alphabet="0123456789 .-+/,", max_size=70))
def test_cards_are_the_union_of_passing_stretches_and_nothing_more(text: str) -> None:
    """Against brute force: nothing is replaced that is not in a stretch that
    passes, and no placeholder is longer than what it replaces."""
    out = CARDS_ONLY.redact(text).text
    assert out == reference_cards(text)
    assert len(out) <= len(text)


@given(st.lists(st.integers(0, 9), max_size=80))
def test_luhn_stretches_agree_with_trying_each_stretch(digits: list[int]) -> None:
    as_text = "".join(map(str, digits))
    assert list(luhn_stretches(digits)) == union(passing_stretches(as_text))


@given(st.text(max_size=60))
def test_redaction_leaves_its_input_alone_and_remembers_nothing(text: str) -> None:
    copy = "".join(list(text))
    first = ALL.redact(text)
    assert text == copy
    assert ALL.redact(text) == first


@given(
    st.sampled_from(sorted(IBAN_LENGTHS)),
    st.randoms(use_true_random=False),
    st.booleans(),
    st.booleans(),
)
def test_any_registry_iban_is_redacted_and_one_wrong_digit_is_not(
    country: str, rnd: random.Random, grouped: bool, lower: bool
) -> None:
    bban = "".join(
        rnd.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(IBAN_LENGTHS[country] - 4)
    )
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    iban = f"{country}{check:02d}{bban}"
    assert iban_ok(iban)
    digit_at = next((i for i in range(4, len(iban)) if iban[i].isdigit()), None)

    def typed(s: str) -> str:
        s = " ".join(s[i : i + 4] for i in range(0, len(s), 4)) if grouped else s
        return s.lower() if lower else s

    assert ALL.redact(f"to {typed(iban)} today").text == "to [IBAN] today"
    if digit_at is not None:
        wrong = iban[:digit_at] + str((int(iban[digit_at]) + 1) % 10) + iban[digit_at + 1 :]
        assert not iban_ok(wrong)
        out = ALL.redact(f"to {typed(wrong)} today").text
        # Not an IBAN, nor half a card; ``phone``, or an IBAN that starts at a
        # later group and happens to pass, may still take part of it.
        assert out.startswith(f"to {typed(wrong)[:4]}")
        assert "[CARD]" not in out


# -- cost ---------------------------------------------------------------------


def test_a_very_long_digit_paste_is_scanned_in_linear_time() -> None:
    """50,000 digits in groups of four (unbroken, they would be a hex secret):
    work quadratic in the run's length would be about 10^9 steps and would not
    end in a test run; the running sums make it 7 comparisons a digit."""
    rnd = random.Random(7)
    digits = "".join(rnd.choice("0123456789") for _ in range(50_000))
    text = " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    out = CARDS_ONLY.redact(text).text
    assert len(out) < len(text) // 100  # one run: nearly all of it passes somewhere
    for m in _RUN.finditer(out):
        assert passing_stretches(re.sub(r"\D", "", m.group())) == []
