from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.pipeline.redact import MASKED, Redactor, luhn_ok
from overt.wire.records import TitleState
from policies.model import Redaction, RedactionPattern, TitleAction

ALL = Redactor(Redaction())

# (name, text, expected text)
REDACTED = [
    ("visa spaced", "card 4111 1111 1111 1111 ok", "card [CARD] ok"),
    ("visa plain", "4111111111111111", "[CARD]"),
    ("amex dashed", "3782-822463-10005", "[CARD]"),
    ("19 digits", "6011 0009 9013 9424 124", "[CARD]"),
    ("mastercard in a sentence", "pay with 5555555555554444.", "pay with [CARD]."),
    ("us ssn", "ssn 123-45-6789", "ssn [NATIONAL_ID]"),
    ("uk ni", "NI AB123456C", "NI [NATIONAL_ID]"),
    ("uk ni spaced lower case", "ni ab 12 34 56 c", "ni [NATIONAL_ID]"),
    ("canadian sin", "SIN 046 454 286", "SIN [NATIONAL_ID]"),
    ("email", "mail john.doe+x@example.co.uk now", "mail [EMAIL] now"),
    ("e164", "call +447911123456", "call [PHONE]"),
    ("international spaced", "call +44 20 7946 0958 today", "call [PHONE] today"),
    ("us parenthesised", "(555) 123-4567", "[PHONE]"),
    ("us dashed", "ring 555-123-4567", "ring [PHONE]"),
    ("uk landline", "020 7946 0958", "[PHONE]"),
    ("uk mobile ungrouped", "07700900123", "[PHONE]"),
    ("aws key id", "key AKIAIOSFODNN7EXAMPLE", "key [SECRET]"),
    ("github pat classic", "ghp_" + "a1B2" * 9, "[SECRET]"),
    ("github fine-grained", "github_pat_11ABCDEFG0123456789_abcdefghij", "[SECRET]"),
    ("slack bot", "xoxb-123456789012-abcdefABCDEF", "[SECRET]"),
    ("bearer", "Authorization: Bearer abc.def-ghi_jkl~mno123", "Authorization: [SECRET]"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2hlcmU", "[SECRET]"),
    ("openai style", "sk-proj-abcdefghijklmnopqrstuv", "[SECRET]"),
    ("stripe live", "sk_live_abcdefghijklmnop1234", "[SECRET]"),
    ("hex run", "token=" + "deadbeef" * 5, "token=[SECRET]"),
    ("base64 run", "k=Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MGFiY2RlZmdo", "k=[SECRET]"),
    (
        "private key block",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- done",
        "[SECRET] done",
    ),
]

UNTOUCHED = [
    ("years and counts", "in 2024 we sold 1500 units"),
    ("16 digits, no 13-19-digit stretch passes luhn", "4111 1111 1111 1113"),
    ("short count", "42 items, 7 boxes"),
    ("iso date", "due 2024-01-15"),
    ("dotted date", "due 15.01.2024"),
    ("ipv4", "host 192.168.100.200"),
    ("price", "price 1 500 000"),
    ("order number", "order 123456789"),
    ("long word", "Pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("path", "/home/user/projects/overt2024/agent/pipeline/redact.py"),
    ("time", "meet at 10:30 or 14:45"),
    ("version", "python 3.11.4 and ruff 0.6.9"),
    ("ssn with bad area", "000-12-3456"),
    ("not an email", "user at example dot com"),
    ("plain text", "hello world"),
]


@pytest.mark.parametrize(("name", "text", "expected"), REDACTED, ids=[c[0] for c in REDACTED])
def test_builtin_classes_are_redacted(name: str, text: str, expected: str) -> None:
    out = ALL.redact(text)
    assert out.text == expected
    assert out.total >= 1


@pytest.mark.parametrize(("name", "text"), UNTOUCHED, ids=[c[0] for c in UNTOUCHED])
def test_ordinary_text_is_untouched(name: str, text: str) -> None:
    out = ALL.redact(text)
    assert out.text == text
    assert out.total == 0


def test_counts_are_per_class() -> None:
    out = ALL.redact("a@b.io, c@d.io and 4111111111111111 and 555-123-4567")
    assert dict(out.counts) == {"email": 2, "card": 1, "phone": 1}
    assert out.text == "[EMAIL], [EMAIL] and [CARD] and [PHONE]"


def test_only_enabled_builtins_apply() -> None:
    r = Redactor(Redaction(builtin=("email",)))
    out = r.redact("a@b.io 4111111111111111")
    assert out.text == "[EMAIL] 4111111111111111"


def test_policy_patterns_use_their_name() -> None:
    r = Redactor(
        Redaction(
            builtin=(), patterns=(RedactionPattern(name="employee_id", pattern=r"EMP-\d{6}"),)
        )
    )
    out = r.redact("ticket for EMP-123456 and EMP-654321")
    assert out.text == "ticket for [REDACTED:employee_id] and [REDACTED:employee_id]"
    assert dict(out.counts) == {"employee_id": 2}


def test_input_is_not_mutated_and_redactor_has_no_memory() -> None:
    text = "mail me at a@b.io"
    first = ALL.redact(text)
    second = ALL.redact(text)
    assert text == "mail me at a@b.io"
    assert first == second


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert luhn_ok("046454286")


def test_title_dropped() -> None:
    out = ALL.title("Inbox - alice@example.com", TitleAction.DROP, ("Inbox",))
    assert out.title is None
    assert out.state is TitleState.DROPPED


def test_title_masked_then_redacted() -> None:
    out = ALL.title("Ticket 4411 - customer bob@example.com", TitleAction.MASK, (r"Ticket \d+",))
    assert out.title == f"{MASKED} - customer [EMAIL]"
    assert out.state is TitleState.MASKED
    assert out.redactions == 2


def test_title_kept_when_nothing_matches() -> None:
    out = ALL.title("Quarterly report.xlsx", TitleAction.KEEP, ())
    assert out.title == "Quarterly report.xlsx"
    assert out.state is TitleState.KEPT


@given(st.text(alphabet="abc XYZ .,-:0123456789", max_size=60))
def test_redaction_is_idempotent(text: str) -> None:
    once = ALL.redact(text).text
    assert ALL.redact(once).text == once
