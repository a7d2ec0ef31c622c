"""The control API's requests: one parser, and refusals that name the problem.

The server answers these refusals over the socket (``tests/agent/
test_control.py`` sends the same lines); here the parser alone is held to
the words the CLI and the tray show, and the client's argument check to the
server's.
"""

from __future__ import annotations

import pytest

from overt.wire.control import (
    COMMANDS,
    EXEMPTION_REQUEST,
    LEDGER,
    MAX_EXEMPTION_DAYS,
    PAUSE,
    ControlFormatError,
    ErrorCode,
    decode_line,
    encode_line,
    encode_request,
    exemption_too_long,
    parse_request,
    parse_response,
)

REFUSALS = [
    (b"hello", "the request is not a UTF-8 JSON object"),
    (b"[1]", "the request is not a JSON object"),
    (b'{"v":1,"cmd":"status","id":7}', "unknown request field 'id'"),
    (b'{"v":true,"cmd":"status"}', "unsupported protocol version"),
    (b'{"v":1.0,"cmd":"status"}', "unsupported protocol version"),
    (b'{"v":1,"cmd":5}', "cmd must be a command name"),
    (b'{"v":1,"cmd":"pause","args":[5]}', "args must be a JSON object"),
    (b'{"v":1,"cmd":"status","args":{"verbose":true}}', "status: unknown argument 'verbose'"),
    (b'{"v":1,"cmd":"pause","args":{"minutes":"5"}}', "minutes must be a whole number"),
    (b'{"v":1,"cmd":"pause","args":{"minutes":true}}', "minutes must be a whole number"),
    (b'{"v":1,"cmd":"pause","args":{"minutes":1.0}}', "minutes must be a whole number"),
    (b'{"v":1,"cmd":"pause","args":{"minutes":NaN}}', "not a UTF-8 JSON object"),
    (b'{"v":1,"cmd":"pause","args":{"minutes":0}}', "between 1 and 1000000, not 0"),
    (b'{"v":1,"cmd":"discard"}', "discard needs minutes"),
    (
        b'{"v":1,"cmd":"exemption.request","args":{"category":"lazy","reason":"r",'
        b'"duration_days":3}}',
        "category must be one of bandwidth, sensitive, battery, other",
    ),
    (
        b'{"v":1,"cmd":"exemption.request","args":{"category":"battery","reason":"  ",'
        b'"duration_days":3}}',
        "reason must be a non-empty text",
    ),
    (
        b'{"v":1,"cmd":"exemption.request","args":{"category":"battery","reason":"r",'
        b'"duration_days":366}}',
        exemption_too_long(366),
    ),
]


@pytest.mark.parametrize(("line", "words"), REFUSALS, ids=[w for _, w in REFUSALS])
def test_a_bad_request_is_refused_in_words_that_name_it(line: bytes, words: str) -> None:
    with pytest.raises(ControlFormatError) as refused:
        parse_request(line)
    assert refused.value.code is ErrorCode.BAD_REQUEST
    assert words in refused.value.message


def test_an_unknown_command_has_its_own_code() -> None:
    with pytest.raises(ControlFormatError) as refused:
        parse_request(b'{"v":1,"cmd":"format-disk"}')
    assert refused.value.code is ErrorCode.UNKNOWN_COMMAND


def test_missing_or_null_arguments_take_the_defaults_and_a_reason_is_trimmed() -> None:
    assert parse_request(b'{"v":1,"cmd":"ledger"}') == (LEDGER, LEDGER.make_args())
    assert parse_request(b'{"v":1,"cmd":"ledger","args":{"days":null}}')[1] == LEDGER.make_args(
        days=7
    )
    assert parse_request(b'{"v":1,"cmd":"pause","args":null}')[1] == PAUSE.make_args()
    _, args = parse_request(
        encode_request(
            "exemption.request", {"category": "other", "reason": "  why  ", "duration_days": 2}
        ).rstrip(b"\n")
    )
    assert args == EXEMPTION_REQUEST.make_args(category="other", reason="why", duration_days=2)


def test_the_client_check_is_the_servers() -> None:
    with pytest.raises(ControlFormatError, match="at most 365 days, not 366"):
        EXEMPTION_REQUEST.make_args(category="other", reason="r", duration_days=366)
    assert EXEMPTION_REQUEST.make_args(
        category="other", reason="r", duration_days=MAX_EXEMPTION_DAYS
    )


def test_every_request_the_client_builds_parses_back_to_its_command() -> None:
    examples: dict[str, dict[str, object]] = {
        "pause": {"minutes": 5},
        "discard": {"minutes": 5},
        "consent.accept": {"policy_version": 3},
        "consent.decline": {"policy_version": 3},
        "exemption.request": {"category": "other", "reason": "r", "duration_days": 2},
        "ledger": {"days": 2},
    }
    for name, command in COMMANDS.items():
        args = examples.get(name, {})
        parsed, checked = parse_request(encode_request(name, args).rstrip(b"\n"))
        assert parsed is command
        assert checked == command.make_args(**args)


def test_a_line_is_compact_json_and_nan_is_not_json() -> None:
    assert encode_line({"a": "ü"}) == '{"a":"ü"}\n'.encode()
    with pytest.raises(ValueError):
        encode_line({"x": float("nan")})
    with pytest.raises(ValueError):
        decode_line(b'{"x": Infinity}')
    with pytest.raises(ValueError):
        decode_line(b"[" * 100_000)


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json",
        b'{"ok": true}',
        b'{"ok": "yes", "result": {}}',
        b'{"ok": false, "error": 5}',
    ],
    ids=["empty", "garbage", "no result", "ok not bool", "bad error"],
)
def test_a_malformed_response_is_refused(line: bytes) -> None:
    with pytest.raises(ControlFormatError):
        parse_response(line)
