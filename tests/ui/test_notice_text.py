"""The capture notice in plain words, from the real notice the agent builds."""

from __future__ import annotations

import copy

from tests.ui.fake_agent import office_notice
from ui.notice_text import notice_html, notice_sections, notice_title


def _text(notice: dict[str, object]) -> str:
    out = []
    for section in notice_sections(notice):
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
    assert notice_title(notice) == "What Example Corp captures on this computer"
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
    html = notice_html(notice, widening=["<i>typed text</i> in apps"])
    assert "<script>" not in html
    assert "<b>Writer</b>" not in html
    assert "<i>typed" not in html
    assert "&lt;script&gt;" in html
    assert "&amp; Co" in html


def test_widening_comes_first() -> None:
    html = notice_html(office_notice(), widening=["typed text in apps matching 'x'"])
    assert html.index("captures more than what you agreed to") < html.index("Why")


def test_a_notice_with_missing_or_wrong_fields_keeps_the_rest() -> None:
    notice = office_notice()
    broken = copy.deepcopy(notice)
    broken["readers"] = "everyone"  # wrong type: sentence dropped, not invented
    broken["retention_days"] = None
    broken["apps"][0] = "not an object"
    del broken["exemptions"]
    text = _text(broken)
    assert "everyone" not in text
    assert "It is kept for" not in text
    assert notice["apps"][1]["name"] in text
    assert "You may ask for an exemption" not in text
    assert "Why" in text


def test_an_empty_notice_still_says_nothing_is_captured() -> None:
    assert "No app is captured." in _text({})


def test_sections_do_not_change_the_notice() -> None:
    notice = office_notice()
    before = copy.deepcopy(notice)
    notice_html(notice)
    assert notice == before


def test_no_review_window_is_said_plainly() -> None:
    notice = office_notice()
    notice["review_window_minutes"] = 0
    text = _text(notice)
    assert "There is no review window" in text
    assert "waits 0 minutes" not in text
