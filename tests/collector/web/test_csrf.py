"""The CSRF checks as pure functions: origin comparison and token comparison."""

from __future__ import annotations

import pytest

from collector.web.csrf import check_origin, check_token, normalise_origin
from collector.web.errors import ForgedRequestError

OWN = "http://127.0.0.1:8473"


@pytest.mark.parametrize(
    ("origin", "referer"),
    [
        ("http://127.0.0.1:8473", None),
        ("HTTP://127.0.0.1:8473", None),
        (None, "http://127.0.0.1:8473/admin/exemptions?x=1"),
        ("https://admin.example.com", None),  # trusted
        ("https://admin.example.com:443", None),
    ],
)
def test_own_and_trusted_origins_pass(origin: str | None, referer: str | None) -> None:
    check_origin(origin, referer, OWN, trusted=["https://admin.example.com"])


@pytest.mark.parametrize(
    ("origin", "referer"),
    [
        ("https://evil.example", None),
        ("http://127.0.0.1:8474", None),  # another port is another origin
        ("https://127.0.0.1:8473", None),  # another scheme too
        ("null", None),  # sandboxed iframes, data: URLs
        ("http://127.0.0.1:8473.evil.example", None),
        (None, "https://evil.example/admin/"),
        ("https://evil.example", "http://127.0.0.1:8473/admin/"),  # Origin wins
        (None, None),
        (None, ""),
        ("http://[::1", None),  # unparsable
    ],
)
def test_foreign_missing_or_unusable_origins_are_refused(
    origin: str | None, referer: str | None
) -> None:
    with pytest.raises(ForgedRequestError):
        check_origin(origin, referer, OWN, trusted=["https://admin.example.com"])


def test_normalise_origin_spells_out_default_ports() -> None:
    assert normalise_origin("https://Example.COM/path") == "https://example.com:443"
    assert normalise_origin("http://example.com") == "http://example.com:80"
    assert normalise_origin("ftp://example.com") is None
    assert normalise_origin("http://:80") is None


@pytest.mark.parametrize("submitted", [None, "", "wrong", "tok", "token-x", "token\x00"])
def test_a_missing_or_wrong_token_is_refused(submitted: str | None) -> None:
    with pytest.raises(ForgedRequestError):
        check_token("token", submitted)


def test_the_right_token_passes() -> None:
    check_token("token-é", "token-é")
