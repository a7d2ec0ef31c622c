"""Key and button naming: the rules of agent.events.KeyEvent, for every backend."""

from __future__ import annotations

import enum
from types import SimpleNamespace

import pytest

from agent.events import KeyEvent, MouseButton
from agent.sources._pynput import decode_button, decode_key
from agent.sources.input import normalise_button, normalise_key

SPECIAL_KEYS = [
    ("ctrl", "ctrl"),
    ("ctrl_l", "ctrl"),
    ("ctrl_r", "ctrl"),
    ("shift", "shift"),
    ("shift_l", "shift"),
    ("shift_r", "shift"),
    ("alt_l", "alt"),
    ("alt_r", "alt"),
    ("alt_gr", "alt_gr"),
    ("cmd", "cmd"),
    ("cmd_l", "cmd"),
    ("cmd_r", "cmd"),
    ("enter", "enter"),
    ("backspace", "backspace"),
    ("tab", "tab"),
    ("esc", "esc"),
    ("left", "left"),
    ("right", "right"),
    ("up", "up"),
    ("down", "down"),
    ("home", "home"),
    ("end", "end"),
    ("page_up", "page_up"),
    ("page_down", "page_down"),
    ("delete", "delete"),
    ("f1", "f1"),
    ("f12", "f12"),
    ("f24", "f24"),
    ("caps_lock", "caps_lock"),
]


@pytest.mark.parametrize(("name", "expected"), SPECIAL_KEYS)
def test_special_keys_have_side_less_names_and_no_char(name: str, expected: str) -> None:
    assert normalise_key(name=name) == (expected, None)


def test_space_is_the_special_key_that_types_a_char() -> None:
    assert normalise_key(name="space") == ("space", " ")
    assert normalise_key(char=" ") == ("space", " ")


@pytest.mark.parametrize("char", ["a", "A", "1", "é", "€", "/", "ß"])
def test_printable_characters_are_both_key_and_char(char: str) -> None:
    assert normalise_key(char=char, vk=65) == (char, char)


@pytest.mark.parametrize(
    ("char", "expected"),
    [("\x03", "c"), ("\x01", "a"), ("\x1a", "z"), ("\t", "tab"), ("\r", "enter"), ("\x1b", "esc")],
)
def test_control_characters_name_the_key_they_came_from(char: str, expected: str) -> None:
    assert normalise_key(char=char) == (expected, None)


def test_key_codes_without_a_char_are_named_by_virtual_key() -> None:
    assert normalise_key(char=None, vk=65027) == ("vk65027", None)
    assert normalise_key() == ("unknown", None)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("left", "left"),
        ("right", "right"),
        ("middle", "middle"),
        ("button8", "x1"),
        (None, "unknown"),
    ],
)
def test_buttons(name: str | None, expected: str) -> None:
    assert normalise_button(name) == expected


class FakeKey(enum.Enum):
    """Stands in for pynput.keyboard.Key (an Enum), which needs a display to import."""

    ctrl_r = 1
    space = 2


def test_pynput_decoder_names_special_keys_and_key_codes() -> None:
    assert decode_key(1.0, FakeKey.ctrl_r, True) == KeyEvent(1.0, "ctrl", True, None)
    assert decode_key(1.0, FakeKey.space, False) == KeyEvent(1.0, "space", False, " ")
    code = SimpleNamespace(char="A", vk=65)
    assert decode_key(2.0, code, True) == KeyEvent(2.0, "A", True, "A")
    assert decode_key(2.0, SimpleNamespace(char=None, vk=269025041), True).key == "vk269025041"
    assert decode_key(3.0, None, False) == KeyEvent(3.0, "unknown", False, None)


def test_pynput_decoder_names_buttons() -> None:
    button = SimpleNamespace(name="right")
    assert decode_button(1.0, 10.0, 20.0, button, True) == MouseButton(1.0, 10, 20, "right", True)
