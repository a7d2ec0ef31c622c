"""The capture notice in plain words, from the real notice the agent builds."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from overt.wire.control import CONSENT_SHOW, ControlFormatError
from overt.wire.notice import CaptureNotice
from tests.ui.fake_agent import office_notice
from ui.notice_text import notice_html, notice_sections, notice_title


def _read(notice: dict[str, Any]) -> CaptureNotice:
    return CaptureNotice.model_validate(notice)


def _text(notice: dict[str, Any]) -> str:
    out = []
    for section in notice_sections(_read(notice)):
        out.append(section.heading)
        for line in section.lines:
            out.extend(line if isinstance(line, tuple) else [line])
    return "\n".join(out)


def test_every_app_of_the_policy_is_named_with_its_signals() -> None:
    notice = office_notice()
    text = _text(notice)
    for app in notice["apps"]:
        assert app["name"] in text
    assert "keyboard: typed text, after redaction" in text
    assert "screenshots: this window only" in text
    assert "only your own clicks and keys: nothing that others send you" in text
    assert "screenshots: no" in text  # the terminal and the chat app


def test_the_notice_says_who_reads_it_how_long_it_is_kept_and_how_to_stop_it() -> None:
    notice = office_notice()
    text = _text(notice)
    assert notice_title(_read(notice)) == "What Example Corp captures on this computer"
    assert f"It is kept for {notice['retention_days']} days." in text
    for reader in notice["readers"]:
        assert reader in text
    assert f"waits {notice['review_window_minutes']} minutes" in text
    assert "for up to 30 minutes" in text
    assert "Never captured, even if a rule above would match: Password managers." in text
    assert "You may ask for an exemption" in text
    assert notice["exemptions"]["how"] in text
    assert "Policy version" in text


def test_html_escapes_everything_from_the_policy() -> None:
    notice = office_notice()
    notice["organisation"] = "<script>alert(1)</script> & Co"
    notice["apps"][0]["name"] = "<b>Writer</b>"
    html = notice_html(_read(notice), widening=["<i>typed text</i> in apps"])
    assert "<script>" not in html
    assert "<b>Writer</b>" not in html
    assert "<i>typed" not in html
    assert "&lt;script&gt;" in html
    assert "&amp; Co" in html


def test_widening_comes_first() -> None:
    html = notice_html(_read(office_notice()), widening=["typed text in apps matching 'x'"])
    assert html.index("captures more than what you agreed to") < html.index("Why")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"readers": "everyone"}, "consent.show.notice.readers"),
        ({"retention_days": None}, "consent.show.notice.retention_days"),
        ({"apps": ["not an object"]}, "consent.show.notice.apps[0]"),
        ({"exemptions": None}, "consent.show.notice.exemptions"),
    ],
    ids=["readers a text", "no retention", "an app not an object", "no exemptions"],
)
def test_a_notice_with_a_wrong_field_is_refused_whole_never_shown_in_part(
    change: dict[str, Any], field: str
) -> None:
    offer = {"policy_version": 3, "needed": True, "widening": [], "previous": None}
    broken = {**office_notice(), **change}
    with pytest.raises(ControlFormatError) as refused:
        CONSENT_SHOW.parse_result({**offer, "notice": broken})
    assert str(refused.value).startswith(field)


def test_fields_a_newer_notice_adds_are_ignored() -> None:
    notice = {**office_notice(), "a_later_field": {"x": 1}}
    assert _text(notice) == _text(office_notice())


def test_a_notice_without_apps_says_nothing_is_captured() -> None:
    assert "No app is captured." in _text({**office_notice(), "apps": []})


def test_sections_do_not_change_the_notice() -> None:
    notice = office_notice()
    before = copy.deepcopy(notice)
    read = _read(notice)
    notice_html(read)
    assert notice == before
    assert read.model_dump(mode="json") == before


def test_no_review_window_is_said_plainly() -> None:
    notice = office_notice()
    notice["review_window_minutes"] = 0
    text = _text(notice)
    assert "There is no review window" in text
    assert "waits 0 minutes" not in text
