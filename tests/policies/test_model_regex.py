"""Policy regular expressions are used exactly as IT wrote and signed them."""

from policies.model import RedactionPattern, TitleRule


def test_regex_whitespace_is_kept_as_signed() -> None:
    assert RedactionPattern(name="spaced", pattern=" id ").pattern == " id "
    assert TitleRule(pattern=" - Private ", action="skip").pattern == " - Private "
