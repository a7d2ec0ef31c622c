"""``overt policy``: exit 0 on success, 1 with one line on a rejected file, 2 on misuse."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from policies.cli import main
from policies.model import POLICY_PAYLOAD_TYPE, PublicKey

from ._build import NOW, policy_doc, stamp, to_bytes

EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"
AT_NOW: list[str | Path] = ["--now", stamp(NOW)]


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(text: str) -> bool:
    return text.strip() != "" and "\n" not in text.strip()


@pytest.fixture
def it_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, _, _ = run(capsys, "keygen", "--out", tmp_path / "it")
    assert code == 0
    return tmp_path / "it"


@pytest.fixture
def signed(tmp_path: Path, it_key: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    source = tmp_path / "policy.json"
    source.write_bytes(to_bytes(policy_doc(1)))
    out = tmp_path / "signed.json"
    code, _, err = run(capsys, "sign", source, "--key", f"{it_key}.key", "--out", out)
    assert code == 0, err
    return out


def test_keygen_writes_a_private_key_only_its_owner_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "keygen", "--out", tmp_path / "k")
    assert code == 0
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert (tmp_path / "k.pub").exists()
    assert out.startswith("key id ")


def test_keygen_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "keygen", "--out", tmp_path / "k")
    code, _, err = run(capsys, "keygen", "--out", tmp_path / "k")
    assert code == 1
    assert one_line(err)
    assert "already exists" in err


def test_sign_then_verify(signed: Path, it_key: Path, capsys: pytest.CaptureFixture[str]) -> None:
    envelope = json.loads(signed.read_bytes())
    assert envelope["payloadType"] == POLICY_PAYLOAD_TYPE
    code, out, err = run(
        capsys,
        "verify",
        signed,
        "--trust",
        f"{it_key}.pub",
        "--tenant",
        "example-corp",
        "--device-group",
        "office",
        *AT_NOW,
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith("OK: policy version 1 for tenant example-corp, expires")
    assert "not checked" not in out


def test_verify_without_scope_options_says_what_it_skipped(
    signed: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "verify", signed, "--trust", f"{it_key}.pub", *AT_NOW)
    assert code == 0
    assert "device group not checked" in out
    assert "tenant not checked" in out


def test_sign_signs_the_exact_file_bytes(
    signed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64

    payload = base64.b64decode(json.loads(signed.read_bytes())["payload"])
    assert payload == (tmp_path / "policy.json").read_bytes()


def test_sign_refuses_an_invalid_policy(
    tmp_path: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.json"
    source.write_bytes(to_bytes(policy_doc(1, retention={"days": 0, "readers": ["x"]})))
    out = tmp_path / "out.json"
    code, _, err = run(capsys, "sign", source, "--key", f"{it_key}.key", "--out", out)
    assert code == 1
    assert one_line(err)
    assert "refusing to sign" in err
    assert "retention.days" in err
    assert not out.exists()


def test_sign_with_a_public_key_is_explained(
    tmp_path: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "p.json"
    source.write_bytes(to_bytes(policy_doc(1)))
    code, _, err = run(capsys, "sign", source, "--key", f"{it_key}.pub", "--out", tmp_path / "o")
    assert code == 1
    assert one_line(err)
    assert "private" in err


def test_verify_rejects_a_tampered_file_in_one_line(
    signed: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    envelope = json.loads(signed.read_bytes())
    envelope["payloadType"] += "x"
    signed.write_text(json.dumps(envelope))
    code, out, err = run(capsys, "verify", signed, "--trust", f"{it_key}.pub", *AT_NOW)
    assert (code, out) == (1, "")
    assert one_line(err)
    assert "rejected" in err
    assert "does not verify" in err


def test_verify_rejects_another_device_group(
    signed: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "verify", signed, "--trust", f"{it_key}.pub", "--device-group", "lab", *AT_NOW
    )
    assert code == 1
    assert one_line(err)
    assert "device group" in err


def test_verify_with_an_untrusted_key(
    signed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "keygen", "--out", tmp_path / "other")
    code, _, err = run(capsys, "verify", signed, "--trust", tmp_path / "other.pub", *AT_NOW)
    assert code == 1
    assert one_line(err)
    assert "not signed by any trusted key" in err


def test_verify_with_state_refuses_rollback_across_runs(
    tmp_path: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {}
    for version in (1, 2):
        source = tmp_path / f"p{version}.json"
        source.write_bytes(to_bytes(policy_doc(version)))
        files[version] = tmp_path / f"s{version}.json"
        code, _, _ = run(capsys, "sign", source, "--key", f"{it_key}.key", "--out", files[version])
        assert code == 0
    state = tmp_path / "state"
    trust: list[str | Path] = ["--trust", f"{it_key}.pub", "--state", state, *AT_NOW]

    assert run(capsys, "verify", files[2], *trust)[0] == 0
    before = {p.name: p.read_bytes() for p in state.iterdir()}
    code, _, err = run(capsys, "verify", files[1], *trust)
    assert code == 1
    assert one_line(err)
    assert "older than the held version 2" in err
    assert {p.name: p.read_bytes() for p in state.iterdir()} == before


def test_verify_an_expired_policy(
    signed: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "verify", signed, "--trust", f"{it_key}.pub", "--now", "2030-01-01T00:00:00Z"
    )
    assert code == 1
    assert one_line(err)
    assert "expired" in err


def test_show_says_the_signature_was_not_checked(
    signed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "show", signed, *AT_NOW)
    assert code == 0
    assert "Signature: NOT checked" in out
    assert "Policy version 1 for tenant example-corp" in out


def test_show_checks_the_signature_with_trust(
    signed: Path, it_key: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "show", signed, "--trust", f"{it_key}.pub", *AT_NOW)
    assert code == 0
    assert "Signature: OK" in out
    run(capsys, "keygen", "--out", tmp_path / "other")
    code, out, err = run(capsys, "show", signed, "--trust", tmp_path / "other.pub")
    assert (code, out) == (1, "")
    assert one_line(err)


def test_show_an_expired_policy_still_shows_it(
    signed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "show", signed, "--now", "2030-01-01T00:00:00Z")
    assert code == 0
    assert "EXPIRED" in out


def test_show_an_unsigned_draft(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", EXAMPLES / "office.json", *AT_NOW)
    assert code == 0
    assert out.startswith("UNSIGNED policy draft")


def test_schema_prints_the_policy_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$id"] == POLICY_PAYLOAD_TYPE
    assert "apps" in schema["properties"]
    assert "exe_paths" in schema["$defs"]["AppMatch"]["properties"]
    assert schema["$defs"]["ExePath"]["required"] == ["path"]


WORKAPP_WARNING = (
    'warning: app "overt-workapp" matches only on values its windows declare themselves '
    "(WM_CLASS); any program can claim them — add exe_paths\n"
)


def test_show_warns_about_an_app_matched_on_declared_values_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "show", EXAMPLES / "test-workapp.json", *AT_NOW)
    assert code == 0
    assert "matched by WM_CLASS overt-workapp" in out
    assert err == WORKAPP_WARNING


def test_show_has_no_identity_warning_when_every_app_names_its_executable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "show", EXAMPLES / "office.json", *AT_NOW)
    assert (code, err) == (0, "")
    assert "matched by exe path /usr/lib/firefox-esr/firefox-esr" in out


def test_show_of_a_signed_policy_lists_pinned_exe_paths(
    tmp_path: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = {
        "id": "workapp",
        "name": "Work app",
        "match": {"exe_paths": [{"path": "/opt/workapp/workapp", "sha256": "AB" * 32}]},
    }
    source = tmp_path / "policy.json"
    source.write_bytes(to_bytes(policy_doc(1, apps=[app])))
    out = tmp_path / "signed.json"
    code, _, err = run(capsys, "sign", source, "--key", f"{it_key}.key", "--out", out)
    assert (code, err) == (0, "")
    code, stdout, err = run(capsys, "show", out, "--trust", f"{it_key}.pub", *AT_NOW)
    assert (code, err) == (0, "")
    assert "matched by exe path /opt/workapp/workapp (sha256 pinned)" in stdout


def test_sign_warns_about_declared_values_and_still_signs(
    tmp_path: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "signed.json"
    code, _, err = run(
        capsys, "sign", EXAMPLES / "test-workapp.json", "--key", f"{it_key}.key", "--out", out
    )
    assert code == 0
    assert err == WORKAPP_WARNING
    assert out.exists()


def test_sign_refuses_a_bad_exe_path_and_writes_nothing(
    tmp_path: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = {"id": "workapp", "name": "Work app", "match": {"exe_paths": ["/opt/../bin/sh"]}}
    source = tmp_path / "policy.json"
    source.write_bytes(to_bytes(policy_doc(1, apps=[app])))
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(capsys, "sign", source, "--key", f"{it_key}.key", "--out", tmp_path / "s")
    assert code == 1
    assert one_line(err)
    assert ". or .. components" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_pubkey_prints_a_snippet_for_a_policy(
    it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "pubkey", f"{it_key}.pub", "--name", "it-2026")
    assert code == 0
    key = PublicKey.model_validate_json(out)
    assert key.name == "it-2026"


def test_the_office_example_signs_and_verifies(
    tmp_path: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "office.signed.json"
    code, _, err = run(
        capsys, "sign", EXAMPLES / "office.json", "--key", f"{it_key}.key", "--out", out
    )
    assert code == 0, err
    code, stdout, err = run(
        capsys,
        "verify",
        out,
        "--trust",
        f"{it_key}.pub",
        "--tenant",
        "example-corp",
        "--device-group",
        "office",
        *AT_NOW,
    )
    assert code == 0, err
    assert "OK: policy version 1" in stdout


def test_two_of_two_signing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "keygen", "--out", tmp_path / "a")
    run(capsys, "keygen", "--out", tmp_path / "b")
    source = tmp_path / "p.json"
    source.write_bytes(to_bytes(policy_doc(1)))
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    run(capsys, "sign", source, "--key", tmp_path / "a.key", "--out", one)
    run(
        capsys,
        "sign",
        source,
        "--key",
        tmp_path / "a.key",
        "--key",
        tmp_path / "b.key",
        "--out",
        two,
    )
    trust: list[str | Path] = ["--trust", tmp_path / "a.pub", "--trust", tmp_path / "b.pub"]
    trust += ["--threshold", "2"]
    assert run(capsys, "verify", two, *trust, *AT_NOW)[0] == 0
    code, _, err = run(capsys, "verify", one, *trust, *AT_NOW)
    assert code == 1
    assert "2 are required" in err


USAGE_ERRORS = {
    "no command": [],
    "unknown command": ["frobnicate"],
    "verify without --trust": ["verify", "x.json"],
    "sign without --key": ["sign", "p.json", "--out", "o.json"],
    "threshold not a number": ["verify", "x.json", "--trust", "a.pub", "--threshold", "two"],
    "time without a zone": ["verify", "x.json", "--trust", "a.pub", "--now", "2026-11-22T12:00"],
    "time not a time": ["verify", "x.json", "--trust", "a.pub", "--now", "tuesday"],
}


@pytest.mark.parametrize("name", list(USAGE_ERRORS), ids=list(USAGE_ERRORS))
def test_usage_errors_exit_2(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *USAGE_ERRORS[name])
    assert code == 2
    assert "usage:" in err


def test_threshold_above_the_number_of_keys_is_a_usage_error(
    signed: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "verify", signed, "--trust", f"{it_key}.pub", "--threshold", "2")
    assert code == 2
    assert "--threshold" in err


def test_the_same_trust_key_twice_is_a_usage_error(
    signed: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pub = f"{it_key}.pub"
    code, _, err = run(capsys, "verify", signed, "--trust", pub, "--trust", pub)
    assert code == 2
    assert "twice" in err


def test_sign_onto_its_own_input_is_a_usage_error(
    tmp_path: Path, it_key: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "p.json"
    source.write_bytes(to_bytes(policy_doc(1)))
    code, _, _ = run(capsys, "sign", source, "--key", f"{it_key}.key", "--out", source)
    assert code == 2
    assert source.read_bytes() == to_bytes(policy_doc(1))


def test_help_exits_0_and_documents_the_scope_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "verify", "--help")
    assert code == 0
    assert "without --device-group" in out


def test_the_overt_dispatcher_reaches_this_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from overt.cli import main as overt_main

    assert overt_main(["policy", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["$id"] == POLICY_PAYLOAD_TYPE
