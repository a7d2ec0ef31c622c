"""Redaction of typed text and window titles, before anything is batched.

This module owns the builtin redaction classes and their placeholders. It
takes text and returns new text plus counts; it never logs, stores or mutates
what it is given. It does not decide *whether* text is captured (the decision
engine does) nor how text is cut into spans (``keys``).

Classes, applied in this order (earlier classes win on overlap):

``secret`` → ``[SECRET]``
    private key blocks (``-----BEGIN … PRIVATE KEY-----``); AWS access key ids
    (``AKIA…``, ``ASIA…``); GitHub tokens (``ghp_``, ``gho_``, ``ghu_``,
    ``ghs_``, ``ghr_``, ``github_pat_``); Slack tokens (``xoxa-``, ``xoxb-``,
    ``xoxp-``, ``xoxr-``, ``xoxs-``); ``Bearer <token>``; JWTs (``eyJ…``);
    ``sk-…`` keys and Stripe-style ``sk_live_``/``rk_test_`` keys; runs of 32+
    hex digits (so also 32+ digits with nothing between them); runs of 32+
    base64/base64url characters that mix upper case, lower case and digits and
    look random (Shannon entropy ≥ 3.5 bits per character).
``email`` → ``[EMAIL]``
    ``local@domain.tld``.
``iban`` → ``[IBAN]``
    The policy's ``iban`` switch.
    Two letters (the country), two check digits, then letters and digits,
    in any case, either unbroken (``DE89370400440532013000``) or in groups of
    four after the check digits, separated by single spaces, the last group
    shorter or not (``de89 3704 0044 0532 0130 00``). For the 89 countries of
    the IBAN registry (``IBAN_LENGTHS``, from SWIFT's IBAN Registry) the IBAN
    is exactly that country's length: an unbroken run of letters and digits
    that is longer is cut there (``DE89370400440532013000123`` →
    ``[IBAN]123``), and groups must end there; for any other two letters the
    whole unbroken or grouped run counts, and must be 15-34 characters long.
    Only what passes the ISO 7064 mod 97-10 check (check digits 02-98) is
    replaced, so words and codes that merely look like an IBAN stay. Not
    covered: other groupings (``DE 89 …``, ``DE8937 04…``), dashes or double
    spaces between groups.
``card`` → ``[CARD]``
    A *digit run* is decimal digits (full-width ones count too) joined by
    single spaces, dashes or dots, so ``4111 1111-1111.1111`` is one run and
    two separators in a row or any other character (``/``, ``:``, ``,``, a
    letter) end it. In a run of 13 or more digits, every stretch of 13-19
    consecutive digits is tried against the Luhn check, wherever it starts and
    ends in the run, not only the whole run. Each stretch that passes is
    replaced from its first digit to its last, the separators inside it
    included and those at its edges kept, so the rest of the run stays:
    ``6011111111111117 123`` → ``[CARD] 123``, ``5105 1051 0510 5100 12/27``
    → ``[CARD] 12/27``, ``4111-1111-1111-1111/12`` → ``[CARD]/12``,
    ``9 4111 1111 1111 1111`` → ``9 [CARD]``. Stretches that share a digit
    become one ``[CARD]`` (counted once), stretches that only touch become two
    (``[CARD] [CARD]``); so digits next to a card go with it when a stretch
    through them passes too (``4111 1111 1111 1111 12/27`` → ``[CARD]/27``).
    One stretch in ten passes Luhn by chance, so a long run that is not a card
    often loses a stretch as well: about three 16-digit numbers in five that
    fail Luhn as a whole, and nearly every run of 20 digits or more. The class
    errs on the side of redacting an order or account number rather than
    passing a card. Left to other classes: a run right after ``+`` with at
    most 15 digits (an E.164 phone number, for ``phone``), and the digits of
    text shaped like an IBAN of a registry country, right length and grouping,
    whose check fails (a mistyped IBAN is not half a card). Runs of any length
    are scanned in time linear in their digits (each stretch's Luhn sum is a
    difference of two running sums), so there is no length limit.
``national_id`` → ``[NATIONAL_ID]``
    US SSN ``123-45-6789`` (dashed form only: an undashed 9-digit number is too
    often something else; area 000, 666, 9xx, group 00, serial 0000 excluded);
    UK National Insurance number ``AB123456C`` (optionally spaced; prefix
    letters per HMRC's allowed set); Canadian SIN ``123-456-782`` or
    ``123 456 782`` (Luhn-checked).
``phone`` → ``[PHONE]``
    ``+`` followed by 8-15 digits with optional spaces, dots, dashes and
    parentheses (E.164 and its usual printed forms); national forms with
    groups, e.g. ``(555) 123-4567``, ``555-123-4567``, ``020 7946 0958``; and
    an ungrouped national number that starts with 0 and has 10-11 digits
    (``07700900123``). Ordinary numbers (years, counts, prices, dates such as
    ``2024-01-15`` or ``15.01.2024``, IPv4 addresses) are not phone numbers.

Policy patterns (``policy.redaction.patterns``) run after the builtins and
replace matches with ``[REDACTED:<name>]``.

The redactor sees one span at a time: a card or IBAN typed in two goes is
redacted as one only while ``keys`` holds the first part back (a span that
ends inside a word, after a digit and a space, or after an IBAN's groups and a
space is held up to 10 s). A part flushed on its own is redacted on its own,
so a part shorter than the class needs (fewer than 13 digits, say) stays.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from overt.wire.records import TitleState
from policies.model import Redaction, TitleAction

PLACEHOLDERS: Mapping[str, str] = {
    "secret": "[SECRET]",
    "email": "[EMAIL]",
    "iban": "[IBAN]",
    "card": "[CARD]",
    "national_id": "[NATIONAL_ID]",
    "phone": "[PHONE]",
}
MASKED = "[MASKED]"
BUILTIN_ORDER = ("secret", "email", "iban", "card", "national_id", "phone")

# IBAN length per country code: the 89 countries of SWIFT's IBAN Registry
# (https://www.swift.com/node/11971).
IBAN_LENGTHS: Mapping[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip
_IBAN_MIN, _IBAN_MAX = 15, 34

CARD_MIN, CARD_MAX = 13, 19
# Luhn: what a digit adds when it is doubled.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """True when letters and digits (no spaces, any case) pass the IBAN check:
    ISO 7064 mod 97-10 over the BBAN, then the country and check digits, with
    check digits 02-98."""
    s = iban.upper()
    if not (s.isascii() and s.isalnum() and s[:2].isalpha() and s[2:4].isdigit()):
        return False
    if not 2 <= int(s[2:4]) <= 98:
        return False
    return int("".join(str(int(ch, 36)) for ch in s[4:] + s[:4])) % 97 == 1


def luhn_stretches(digits: list[int]) -> Iterator[tuple[int, int]]:
    """The union of all stretches of ``CARD_MIN``-``CARD_MAX`` consecutive
    digits that pass Luhn, as ``(start, end)`` index pairs: stretches that
    share a digit are one pair, stretches that only touch are two.

    Linear in ``len(digits)``: the Luhn sum of ``digits[s:e]`` doubles the
    digits whose index has the parity of ``e``, so it is a difference of one
    of two running sums (``doubled_even`` doubles even indices,
    ``doubled_odd`` odd ones).
    """
    n = len(digits)
    doubled_even = [0] * (n + 1)
    doubled_odd = [0] * (n + 1)
    for i, d in enumerate(digits):
        if i & 1:
            doubled_even[i + 1] = doubled_even[i] + d
            doubled_odd[i + 1] = doubled_odd[i] + _DOUBLED[d]
        else:
            doubled_even[i + 1] = doubled_even[i] + _DOUBLED[d]
            doubled_odd[i + 1] = doubled_odd[i] + d
    sums = (doubled_even, doubled_odd)
    lo = hi = -1  # the union being built, empty while hi < 0
    for s in range(n - CARD_MIN + 1):
        for e in range(s + CARD_MIN, min(s + CARD_MAX, n) + 1):
            run = sums[e & 1]
            if (run[e] - run[s]) % 10 == 0:
                if s < hi:
                    hi = max(hi, e)
                else:
                    if hi >= 0:
                        yield lo, hi
                    lo, hi = s, e
    if hi >= 0:
        yield lo, hi


def _entropy(s: str) -> float:
    counts: dict[str, int] = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


# A pass replaces what it finds of its class in a text with a placeholder,
# and returns the new text and how many it replaced.
_Pass = Callable[[str, str], tuple[str, int]]
# A validator returns True when a regex match really is of the class.
_Validator = Callable[[str], bool]


def _matches(pattern: re.Pattern[str], check: _Validator | None = None) -> _Pass:
    """A pass over a regex's matches; with ``check``, over those it accepts."""
    if check is None:

        def apply_all(text: str, placeholder: str) -> tuple[str, int]:
            return pattern.subn(lambda _: placeholder, text)

        return apply_all
    accept = check

    def apply(text: str, placeholder: str) -> tuple[str, int]:
        n = 0

        def replace(m: re.Match[str]) -> str:
            nonlocal n
            if not accept(m.group(0)):
                return m.group(0)
            n += 1
            return placeholder

        return pattern.sub(replace, text), n

    return apply


def _spans(find: Callable[[str], Iterable[tuple[int, int]]]) -> _Pass:
    """A pass over the spans ``find`` yields, in order and not overlapping."""

    def apply(text: str, placeholder: str) -> tuple[str, int]:
        parts: list[str] = []
        done = 0
        for start, end in find(text):
            parts.append(text[done:start])
            parts.append(placeholder)
            done = end
        if not parts:
            return text, 0
        parts.append(text[done:])
        return "".join(parts), len(parts) // 2

    return apply


# CARD_MIN or more digits joined by single separators; matched from a run's
# first digit, so it takes the whole run.
_DIGIT_RUN = re.compile(r"\d(?:[ .-]?\d){12,}")


def _cards(text: str) -> Iterator[tuple[int, int]]:
    barriers: list[tuple[int, int]] | None = None  # IBAN-shaped text, found on demand
    b = 0
    for m in _DIGIT_RUN.finditer(text):
        start = m.start()
        at = [start + i for i, ch in enumerate(m.group(0)) if ch.isdigit()]
        if start and text[start - 1] == "+" and len(at) <= 15:
            continue  # a phone number in E.164, for ``phone``
        if barriers is None:
            barriers = _iban_barriers(text)
        part: list[int] = []
        for i in at:  # digits outside barriers, cut where a barrier lies between them
            while b < len(barriers) and barriers[b][1] <= i:
                b += 1
            if b < len(barriers) and barriers[b][0] <= i:
                yield from _luhn_spans(text, part)
                part = []
            else:
                part.append(i)
        yield from _luhn_spans(text, part)


def _luhn_spans(text: str, at: list[int]) -> Iterator[tuple[int, int]]:
    """Spans of ``text`` covering each union of Luhn stretches among the digits
    at positions ``at``."""
    if len(at) >= CARD_MIN:
        for s, e in luhn_stretches([int(text[i]) for i in at]):
            yield at[s], at[e - 1] + 1


_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?= ?[A-Za-z0-9])")
_ANY_DIGIT = re.compile(r"[0-9]")


def _alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _iban_shape(text: str, start: int) -> tuple[int, str] | None:
    """Where text shaped like an IBAN that starts at ``start`` ends, and its
    letters and digits; None when the shape does not fit. The check digits
    are not checked here."""
    length = IBAN_LENGTHS.get(text[start : start + 2].upper())
    limit = length or _IBAN_MAX
    n = len(text)
    end = start + 4
    if _alnum(text[end]):  # unbroken
        while end < n and end - start <= _IBAN_MAX and _alnum(text[end]):
            end += 1
        if length is not None:
            if end - start < length:
                return None
            end = start + length
        elif (end < n and _alnum(text[end])) or not _IBAN_MIN <= end - start <= _IBAN_MAX:
            return None
        return end, text[start:end]
    # groups of four after the check digits; a shorter group is the last
    parts = [text[start:end]]
    size = 4
    while size < limit and text.startswith(" ", end):
        group = end + 1
        while group < n and group - end <= 5 and _alnum(text[group]):
            group += 1
        width = group - end - 1
        if not 1 <= width <= 4:
            break
        parts.append(text[end + 1 : group])
        size += width
        end = group
        if width < 4:
            break
    fits = size == length if length is not None else _IBAN_MIN <= size <= _IBAN_MAX
    return (end, "".join(parts)) if fits else None


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    if _ANY_DIGIT.search(text) is None:
        return  # most typed text: a digit is quicker to look for than a start
    done = 0
    for m in _IBAN_START.finditer(text):
        if m.start() < done:
            continue  # inside the IBAN before
        shape = _iban_shape(text, m.start())
        if shape is not None and iban_ok(shape[1]):
            yield m.start(), shape[0]
            done = shape[0]


def _iban_barriers(text: str) -> list[tuple[int, int]]:
    """Text shaped like an IBAN of a registry country, whether or not its
    check digits are right, as sorted, disjoint spans: ``card`` leaves the
    digits in them alone, so a mistyped IBAN is not half a card."""
    out: list[tuple[int, int]] = []
    for m in _IBAN_START.finditer(text):
        if m.group(0)[:2].upper() not in IBAN_LENGTHS:
            continue
        shape = _iban_shape(text, m.start())
        if shape is None:
            continue
        if out and m.start() < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], shape[0]))
        else:
            out.append((m.start(), shape[0]))
    return out


def _random_b64(s: str) -> bool:
    core = s.rstrip("=")
    mixed = (
        any(c.isdigit() for c in core)
        and any(c.isupper() for c in core)
        and any(c.islower() for c in core)
    )
    return mixed and _entropy(core) >= 3.5


def _national_id(s: str) -> bool:
    if s[0].isalpha():  # UK NI: validated by the pattern itself
        return True
    d = _digits(s)
    if len(d) == 9 and s[3] == s[7] and s[3] in " -" and len(s) == 11:
        return luhn_ok(d)  # Canadian SIN
    return True  # US SSN, validated by the pattern


def _phone(s: str) -> bool:
    n = len(_digits(s))
    if s.startswith("+"):
        return 8 <= n <= 15
    return 9 <= n <= 12


_SECRET_PARTS = (
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
    r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    r"\b[Bb]earer\s+[A-Za-z0-9._~+/-]{16,}=*",
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    r"\beyJ[A-Za-z0-9_-]{16,}",
    r"\bsk-[A-Za-z0-9_-]{20,}",
    r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,}(?![0-9A-Za-z])",
)

_BUILTINS: dict[str, tuple[_Pass, ...]] = {
    "secret": (
        _matches(re.compile("|".join(_SECRET_PARTS))),
        _matches(re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}"), _random_b64),
    ),
    "email": (
        _matches(
            re.compile(
                r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
            )
        ),
    ),
    "iban": (_spans(_ibans),),
    "card": (_spans(_cards),),
    "national_id": (
        _matches(
            re.compile(
                r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"
                r"|(?<![\d-])(?<!\d )\d{3}([ -])\d{3}\1\d{3}(?![\d-])(?! \d)"
                r"|(?<![A-Za-z0-9])(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])",
                re.IGNORECASE,
            ),
            _national_id,
        ),
    ),
    "phone": (
        _matches(
            re.compile(
                r"(?<![\w+])\+\d[\d .()-]{6,22}\d(?![\d])"
                r"|(?<![\w.])(?<!\d[ -])\(?\d{3,5}\)?[ .-]?\d{3,4}[ .-]\d{3,4}(?!\d|[ .-]\d)"
                r"|(?<![\w.])0\d{9,10}(?![\d]|\.\d)"
            ),
            _phone,
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class Redacted:
    """Redacted text and how many matches of each class were replaced."""

    text: str
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class MaskedTitle:
    title: str | None
    state: TitleState
    redactions: int = 0


class Redactor:
    """Applies one policy's redaction settings. Immutable once built; thread-safe."""

    __slots__ = ("_passes", "_title_masks")

    def __init__(self, redaction: Redaction) -> None:
        passes: list[tuple[str, str, _Pass]] = []
        for name in BUILTIN_ORDER:
            if name in redaction.builtin:
                for apply in _BUILTINS[name]:
                    passes.append((name, PLACEHOLDERS[name], apply))
        for custom in redaction.patterns:
            passes.append(
                (custom.name, f"[REDACTED:{custom.name}]", _matches(re.compile(custom.pattern)))
            )
        self._passes = tuple(passes)
        self._title_masks: dict[tuple[str, ...], tuple[re.Pattern[str], ...]] = {}

    def redact(self, text: str) -> Redacted:
        """Replace every match with its placeholder; counts are per class name."""
        counts: dict[str, int] = {}
        for name, placeholder, apply in self._passes:
            if not text:
                break
            text, n = apply(text, placeholder)
            if n:
                counts[name] = counts.get(name, 0) + n
        return Redacted(text, counts)

    def title(self, title: str, action: TitleAction, masks: Iterable[str] = ()) -> MaskedTitle:
        """A window title per a decision: dropped, or masked then redacted."""
        if action is TitleAction.DROP:
            return MaskedTitle(None, TitleState.DROPPED)
        key = tuple(masks)
        compiled = self._title_masks.get(key)
        if compiled is None:
            compiled = tuple(re.compile(m) for m in key)
            if len(self._title_masks) < 256:
                self._title_masks[key] = compiled
        masked = 0
        for pattern in compiled:
            title, n = pattern.subn(MASKED, title)
            masked += n
        red = self.redact(title)
        state = TitleState.MASKED if masked or red.total else TitleState.KEPT
        return MaskedTitle(red.text, state, masked + red.total)
