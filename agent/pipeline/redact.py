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
    hex digits; runs of 32+ base64/base64url characters that mix upper case,
    lower case and digits and look random (Shannon entropy ≥ 3.5 bits per character).
``email`` → ``[EMAIL]``
    ``local@domain.tld``.
``card`` → ``[CARD]``
    13-19 digits, optionally grouped by single spaces or dashes, that pass the
    Luhn check. A sequence failing Luhn is left alone.
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
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from policies.model import Redaction, TitleAction

from .records import TitleState

PLACEHOLDERS: Mapping[str, str] = {
    "secret": "[SECRET]",
    "email": "[EMAIL]",
    "card": "[CARD]",
    "national_id": "[NATIONAL_ID]",
    "phone": "[PHONE]",
}
MASKED = "[MASKED]"
BUILTIN_ORDER = ("secret", "email", "card", "national_id", "phone")


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


def _entropy(s: str) -> float:
    counts: dict[str, int] = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


# A validator returns True when a regex match really is of the class.
_Validator = Callable[[str], bool]


def _always(_: str) -> bool:
    return True


def _card(s: str) -> bool:
    d = _digits(s)
    return 13 <= len(d) <= 19 and luhn_ok(d)


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

_BUILTINS: dict[str, tuple[tuple[re.Pattern[str], _Validator], ...]] = {
    "secret": (
        (re.compile("|".join(_SECRET_PARTS)), _always),
        (re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}"), _random_b64),
    ),
    "email": (
        (
            re.compile(
                r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
            ),
            _always,
        ),
    ),
    "card": ((re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])"), _card),),
    "national_id": (
        (
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
        (
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
        passes: list[tuple[str, str, re.Pattern[str], _Validator]] = []
        for name in BUILTIN_ORDER:
            if name in redaction.builtin:
                for pattern, check in _BUILTINS[name]:
                    passes.append((name, PLACEHOLDERS[name], pattern, check))
        for custom in redaction.patterns:
            passes.append(
                (custom.name, f"[REDACTED:{custom.name}]", re.compile(custom.pattern), _always)
            )
        self._passes = tuple(passes)
        self._title_masks: dict[tuple[str, ...], tuple[re.Pattern[str], ...]] = {}

    def redact(self, text: str) -> Redacted:
        """Replace every match with its placeholder; counts are per class name."""
        counts: dict[str, int] = {}
        for name, placeholder, pattern, check in self._passes:
            if not text:
                break

            def replace(
                m: re.Match[str],
                name: str = name,
                placeholder: str = placeholder,
                check: _Validator = check,
            ) -> str:
                found = m.group(0)
                if not check(found):
                    return found
                counts[name] = counts.get(name, 0) + 1
                return placeholder

            text = pattern.sub(replace, text)
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
