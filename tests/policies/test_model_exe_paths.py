"""``exe_paths``: executables named by real path and optional digest, validated strictly."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from policies.model import MAX_EXE_PATH, AppMatch, DeniedApp, ExePath, policy_json_schema
from policies.verify import parse_policy_payload

from ._build import policy_doc, to_bytes

DIGEST = "0123456789abcdef" * 4
SOFFICE = "/usr/lib/libreoffice/program/soffice.bin"
#: 16 components of 255 bytes: exactly MAX_EXE_PATH characters.
LONGEST = "/" + "/".join(["a" * 255] * 16)

GOOD: dict[str, tuple[Any, ExePath]] = {
    "a path string": ("/usr/bin/xterm", ExePath(path="/usr/bin/xterm")),
    "an object with a path only": ({"path": "/usr/bin/xterm"}, ExePath(path="/usr/bin/xterm")),
    "an object with a digest": (
        {"path": "/opt/Element/element-desktop", "sha256": DIGEST},
        ExePath(path="/opt/Element/element-desktop", sha256=DIGEST),
    ),
    "an upper-case digest is kept in lower case": (
        {"path": "/usr/bin/xterm", "sha256": DIGEST.upper()},
        ExePath(path="/usr/bin/xterm", sha256=DIGEST),
    ),
    "case is kept": ("/opt/Slack/Slack", ExePath(path="/opt/Slack/Slack")),
    "spaces inside a component": ("/opt/My App/app", ExePath(path="/opt/My App/app")),
    "non-ASCII text": ("/opt/café/café", ExePath(path="/opt/café/café")),
    "dots inside a name": (SOFFICE, ExePath(path=SOFFICE)),
    "a hidden file": ("/opt/app/.bin", ExePath(path="/opt/app/.bin")),
    "the longest path": (LONGEST, ExePath(path=LONGEST)),
}

BAD: dict[str, tuple[Any, str]] = {
    "relative": ("usr/bin/xterm", "absolute"),
    "bare name": ("xterm", "absolute"),
    "empty": ("", "at least 1 character"),
    "home-relative": ("~/bin/xterm", "absolute"),
    "a Windows path": (r"C:\Program Files\app.exe", "absolute"),
    "the root": ("/", "not a directory"),
    "trailing slash": ("/usr/bin/", "not a directory"),
    "empty component": ("/usr//bin/xterm", "empty component"),
    "dot component": ("/usr/./bin/xterm", ". or .."),
    "dot-dot component": ("/usr/lib/../bin/xterm", ". or .."),
    "trailing dot-dot": ("/usr/bin/..", ". or .."),
    "NUL": ("/usr/bin/xterm\x00.evil", "NUL"),
    "newline": ("/usr/bin/xterm\nwarning: fine", "control characters"),
    "DEL": ("/usr/bin/x\x7fterm", "control characters"),
    "leading whitespace": (" /usr/bin/xterm", "whitespace"),
    "trailing whitespace": ("/usr/bin/xterm ", "whitespace"),
    "too long": ("/" + "a/" * (MAX_EXE_PATH // 2) + "a", "at most 4096"),
    "component too long": ("/opt/" + "a" * 256, "255 bytes"),
    "not a string": (42, "valid"),
    "digest too short": ({"path": "/usr/bin/xterm", "sha256": DIGEST[:-1]}, "pattern"),
    "digest too long": ({"path": "/usr/bin/xterm", "sha256": DIGEST + "0"}, "pattern"),
    "digest not hex": ({"path": "/usr/bin/xterm", "sha256": "g" * 64}, "pattern"),
    "digest with whitespace": ({"path": "/usr/bin/xterm", "sha256": f" {DIGEST}"}, "pattern"),
    "digest as base64": (
        {"path": "/usr/bin/xterm", "sha256": "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8="},
        "pattern",
    ),
    "object without a path": ({"sha256": DIGEST}, "path"),
    "unknown field": ({"path": "/usr/bin/xterm", "md5": "0" * 32}, "md5"),
    "bad path in an object": ({"path": "bin/xterm", "sha256": DIGEST}, "absolute"),
}


@pytest.mark.parametrize("name", list(GOOD), ids=list(GOOD))
def test_good_exe_path_entries_are_accepted_and_normalised(name: str) -> None:
    raw, expected = GOOD[name]
    (entry,) = AppMatch(exe_paths=(raw,)).exe_paths
    assert entry == expected


@pytest.mark.parametrize("name", list(BAD), ids=list(BAD))
def test_bad_exe_path_entries_are_rejected_with_a_reason(name: str) -> None:
    raw, reason = BAD[name]
    with pytest.raises(ValidationError, match="exe_paths") as caught:
        AppMatch(exe_paths=(raw,))
    assert reason in str(caught.value)


def test_exe_paths_alone_are_an_identity() -> None:
    assert AppMatch(exe_paths=("/usr/bin/xterm",)).hints == ()
    with pytest.raises(ValidationError, match="at least one identity value"):
        AppMatch(exe_paths=())


def test_one_path_may_be_pinned_to_several_digests() -> None:
    other = "f" * 64
    match = AppMatch(
        exe_paths=(
            ExePath(path="/usr/bin/xterm", sha256=DIGEST),
            ExePath(path="/usr/bin/xterm", sha256=other),
        )
    )
    assert [e.sha256 for e in match.exe_paths] == [DIGEST, other]


def test_a_path_both_pinned_and_unpinned_is_rejected() -> None:
    with pytest.raises(ValidationError, match="with and without a sha256"):
        AppMatch(exe_paths=(ExePath(path="/usr/bin/xterm", sha256=DIGEST), "/usr/bin/xterm"))


def test_never_capture_takes_paths_but_no_digests() -> None:
    denied = DeniedApp(name="KeePassXC", match=AppMatch(exe_paths=("/usr/bin/keepassxc",)))
    assert denied.match.exe_paths == (ExePath(path="/usr/bin/keepassxc"),)
    pinned = AppMatch(exe_paths=(ExePath(path="/usr/bin/keepassxc", sha256=DIGEST),))
    with pytest.raises(ValidationError, match="take no sha256"):
        DeniedApp(name="KeePassXC", match=pinned)


def test_a_policy_file_writes_entries_as_strings_or_objects() -> None:
    apps = [
        {
            "id": "term",
            "name": "Terminal",
            "match": {
                "exe_paths": ["/usr/bin/xterm", {"path": "/opt/t/term", "sha256": DIGEST.upper()}]
            },
        }
    ]
    policy = parse_policy_payload(to_bytes(policy_doc(1, apps=apps)))
    assert policy.apps[0].match.exe_paths == (
        ExePath(path="/usr/bin/xterm"),
        ExePath(path="/opt/t/term", sha256=DIGEST),
    )
    # What the model dumps reads back as the same policy.
    assert type(policy).model_validate(policy.model_dump()) == policy


def test_the_schema_documents_exe_paths_as_a_path_or_an_object() -> None:
    schema = policy_json_schema()
    defs: dict[str, Any] = schema["$defs"]  # type: ignore[assignment]
    items = defs["AppMatch"]["properties"]["exe_paths"]["items"]["anyOf"]
    assert {"type": "string", "minLength": 1, "maxLength": MAX_EXE_PATH} in items
    assert {"$ref": "#/$defs/ExePath"} in items
    assert defs["ExePath"]["required"] == ["path"]
    assert defs["ExePath"]["additionalProperties"] is False
    assert "client cannot fake" in " ".join(defs["AppMatch"]["description"].split())
