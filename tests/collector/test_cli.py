"""``overt collector enroll-token | admin-token | admin-user`` on a data directory; passwords."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from collector.cli import main
from collector.config import CollectorConfig, StorageConfig
from collector.credentials import ScryptParams, hash_password, token_hash, verify_password
from collector.service import CollectorService
from collector.store.sqlite import SQLiteStorage
from overt.cli import main as overt_main


def _service(data: Path) -> CollectorService:
    storage = SQLiteStorage(StorageConfig(data_dir=data, exclusive=False))
    return CollectorService(storage, CollectorConfig(storage=storage.config))


def test_enroll_token_prints_a_single_use_token_stored_hashed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "collector"
    code = main(
        [
            "enroll-token",
            "--data",
            str(data),
            "--tenant",
            "acme",
            "--group",
            "lab",
            "--expires-minutes",
            "5",
        ]
    )
    assert code == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("ovt_enroll_")
    assert "expires in 5 minute(s)" in err
    service = _service(data)
    try:
        [record] = service.accounts.list_enrollment_tokens()
        assert record.token_hash == token_hash(token)
        assert (record.tenant, record.group) == ("acme", "lab")
        assert record.expires_at_ms - record.created_at_ms == 5 * 60_000
        assert token.encode() not in (data / "collector.db").read_bytes()
    finally:
        service.close()


def test_admin_token_prints_a_token_the_api_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "collector"
    assert overt_main(["collector", "admin-token", "--data", str(data), "--name", "bob"]) == 0
    token = capsys.readouterr().out.strip()
    service = _service(data)
    try:
        assert service.authenticate_admin(f"Bearer {token}").actor == "admin:bob"
        [event] = service.audit(10)
        assert (event.action, event.detail) == ("admin_token.created", {"name": "bob"})
    finally:
        service.close()


def test_admin_user_takes_the_password_from_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "collector"
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery staple\n"))
    assert main(["admin-user", "--data", str(data), "--name", "carol"]) == 0
    assert "correct horse" not in capsys.readouterr().out
    service = _service(data)
    try:
        user = service.storage.get_admin_user("carol")
        assert user is not None
        assert user.password_hash.startswith("scrypt$32768$8$1$")
        assert service.accounts.check_admin_password("carol", "correct horse battery staple")
        assert not service.accounts.check_admin_password("carol", "correct horse battery")
        assert not service.accounts.check_admin_password("nobody", "correct horse battery staple")
    finally:
        service.close()


def test_changing_a_password_keeps_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "collector"
    for password in ("first password", "second password"):
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        assert main(["admin-user", "--data", str(data), "--name", "carol"]) == 0
    service = _service(data)
    try:
        assert service.accounts.check_admin_password("carol", "second password")
        assert not service.accounts.check_admin_password("carol", "first password")
        actions = [e.action for e in service.audit(10)]
        assert actions == ["admin_user.password_changed", "admin_user.created"]
    finally:
        service.close()


def test_an_empty_password_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["admin-user", "--data", str(tmp_path / "d"), "--name", "carol"]) == 1
    assert "no password on stdin" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["enroll-token", "--tenant", "bad tenant", "--group", "g"],
        ["enroll-token", "--tenant", "t", "--group", "g", "--expires-minutes", "0"],
        ["admin-token", "--name", "has space"],
    ],
)
def test_bad_values_are_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main([argv[0], "--data", str(tmp_path / "d"), *argv[1:]]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("overt collector: ")
    assert "\n" not in err


def test_a_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["enroll-token", "--tenant", "t"])
    assert exited.value.code == 2


# ------------------------------------------------------------- passwords

FAST = ScryptParams(n=2**10)


def test_each_password_hash_has_its_own_salt() -> None:
    first, second = hash_password("same", FAST), hash_password("same", FAST)
    assert first != second
    assert verify_password("same", first)
    assert verify_password("same", second)
    assert not verify_password("Same", first)


@pytest.mark.parametrize(
    "record",
    [
        "",
        "scrypt$1024$8$1$salt",
        "bcrypt$1024$8$1$c2FsdA==$aGFzaA==",
        "scrypt$1024$8$1$not base64!$aGFzaA==",
        "scrypt$99999999$8$1$c2FsdA==$aGFzaA==",
        "scrypt$x$8$1$c2FsdA==$aGFzaA==",
    ],
)
def test_an_unreadable_record_never_matches(record: str) -> None:
    assert not verify_password("anything", record)


def test_empty_and_huge_passwords_never_match() -> None:
    record = hash_password("p", FAST)
    assert not verify_password("", record)
    assert not verify_password("p" * 5000, record)
