"""``overt admin ...`` against the in-process collector (its client is a ``TestClient``)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from collector.admin_cli import main
from collector.service import CollectorService
from tests.policies._build import policy_doc, sign

from .conftest import Enroll

DeviceCall = Callable[..., httpx.Response]
Admin = Callable[..., tuple[int, str]]


@pytest.fixture
def token_file(tmp_path: Path, service: CollectorService) -> Path:
    path = tmp_path / "admin.token"
    path.write_text(service.accounts.create_admin_token("alice", "cli:test") + "\n")
    return path


@pytest.fixture
def admin(client: TestClient, token_file: Path) -> Admin:
    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = main(["--token-file", str(token_file), *argv], client=client, environ={}, out=out)
        return code, out.getvalue()

    return run


def _ask(device_call: DeviceCall, device: Any, category: str = "battery") -> str:
    body = json.dumps({"category": category, "reason": "on battery all day", "duration_days": 5})
    request_id: str = device_call(device, "POST", "/v1/exemptions", body.encode()).json()[
        "request_id"
    ]
    return request_id


def test_the_review_loop_from_the_terminal(
    admin: Admin, enroll: Enroll, device_call: DeviceCall, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.signed.json"
    policy.write_bytes(sign(policy_doc(1), ["A"]))
    code, out = admin("policy-put", str(policy))
    assert (code, out.strip()) == (0, "policy example-corp version 1 for office: stored")

    device = enroll()
    first, second = _ask(device_call, device), _ask(device_call, device, "bandwidth")
    code, out = admin("requests", "--status", "pending")
    assert code == 0
    assert first in out
    assert second in out
    assert "on battery all day" in out

    code, out = admin("approve", first, "--days", "3")
    assert code == 0
    assert out.startswith(f"approved {first}: grant g-")
    assert "2026-11-25T12:00:00.000Z" in out
    code, out = admin("deny", second, "--reason", "home internet is unmetered")
    assert (code, out.strip()) == (0, f"denied {second}")

    code, out = admin("requests", "--status", "pending")
    assert (code, out.strip()) == (0, "no exemption requests")
    code, out = admin("audit", "--limit", "3")
    assert code == 0
    assert [line.split("  ")[2] for line in out.splitlines()] == [
        "exemption.denied",
        "exemption.approved",
        "exemption.requested",
    ]
    assert all("admin:alice" in line for line in out.splitlines()[:2])


def test_devices_tokens_and_revocation(admin: Admin, enroll: Enroll) -> None:
    code, out = admin("enroll-token", "--tenant", "example-corp", "--group", "office")
    assert code == 0
    assert out.strip().startswith("ovt_enroll_")
    device = enroll()
    code, out = admin("devices")
    assert code == 0
    assert device.device_id in out
    code, out = admin("tokens")
    assert out.count("example-corp") == 2  # the one above and the one enroll() used
    assert device.device_id in out
    code, out = admin("revoke", device.device_id)
    assert (code, out.strip()) == (0, f"revoked {device.device_id}")
    assert "(revoked)" in admin("devices")[1]


def test_json_output_is_the_collectors_answer(admin: Admin, enroll: Enroll) -> None:
    device = enroll()
    code, out = admin("--json", "devices")
    assert code == 0
    assert json.loads(out)["devices"][0]["device_id"] == device.device_id


def test_the_token_may_come_from_the_environment(client: TestClient, token_file: Path) -> None:
    out = io.StringIO()
    environ = {"OVERT_ADMIN_TOKEN": token_file.read_text().strip()}
    assert main(["devices"], client=client, environ=environ, out=out) == 0


def test_a_refusal_prints_the_error_code_and_exits_1(
    admin: Admin, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = admin("approve", "r-does-not-exist")
    assert code == 1
    assert "404 not_found" in capsys.readouterr().err


def test_a_wrong_token_exits_1_without_printing_it(
    client: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.token"
    bad.write_text("ovt_admin_wrong-secret\n")
    assert main(["--token-file", str(bad), "devices"], client=client, environ={}) == 1
    err = capsys.readouterr().err
    assert "401 unauthorized" in err
    assert "wrong-secret" not in err


def test_no_token_is_a_usage_error(client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices"], client=client, environ={}) == 2
    assert "OVERT_ADMIN_TOKEN" in capsys.readouterr().err


def test_an_unreachable_collector_exits_1(
    token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--url", "http://127.0.0.1:9", "--token-file", str(token_file), "devices"], environ={}
    )
    assert code == 1
    assert "cannot reach the collector" in capsys.readouterr().err


def test_an_unreadable_policy_file_is_a_usage_error(admin: Admin, tmp_path: Path) -> None:
    code, _ = admin("policy-put", str(tmp_path / "missing.json"))
    assert code == 2
