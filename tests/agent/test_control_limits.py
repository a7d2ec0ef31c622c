"""The control API refuses what the collector would refuse, in the same words
everywhere: an exemption longer than the collector's limit never leaves the agent."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.control import ControlClient, ControlError, ControlServer
from agent.control_target import AgentControlTarget, ControlParts
from collector.schemas import ExemptionIn
from overt.wire.control import MAX_EXEMPTION_DAYS, encode_request
from tests.agent.test_control import FakeTarget

ROOT = Path(__file__).resolve().parents[2]


def test_the_exemption_limit_is_the_collectors() -> None:
    def request(days: int) -> ExemptionIn:
        body = {"category": "bandwidth", "reason": "metered line", "duration_days": days}
        return ExemptionIn.model_validate_json(json.dumps(body))  # as the collector's API reads it

    assert request(MAX_EXEMPTION_DAYS).duration_days == MAX_EXEMPTION_DAYS
    with pytest.raises(ValidationError):
        request(MAX_EXEMPTION_DAYS + 1)


def test_an_exemption_over_the_limit_is_refused_in_words_and_never_reaches_the_agent(
    tmp_path: Path,
) -> None:
    target = FakeTarget()
    with ControlServer(target, tmp_path / "run" / "agent.sock") as server:
        client = ControlClient(server.path)
        # The client refuses it with the server's own check, in the same words...
        with pytest.raises(ControlError) as refused:
            client.exemption_request("bandwidth", "metered line", MAX_EXEMPTION_DAYS + 1)
        assert refused.value.code == "bad_request"
        assert "at most 365 days, not 366" in refused.value.message
        # ...and the server refuses it from a client that did not check.
        args = {"category": "bandwidth", "reason": "metered line", "duration_days": 366}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.settimeout(5)
            raw.connect(os.fspath(server.path))
            raw.sendall(encode_request("exemption.request", args))
            answer = json.loads(raw.makefile("rb").readline())
        assert answer["error"] == "bad_request"
        assert answer["message"] == refused.value.message
        assert target.calls == []
        client.exemption_request("bandwidth", "metered line", MAX_EXEMPTION_DAYS)
        assert target.calls == [("exemption_request", ("bandwidth", "metered line", 365))]


def test_the_agent_adapter_refuses_it_too() -> None:
    sent: list[Any] = []

    def request(category: str, reason: str, days: int) -> dict[str, Any]:
        sent.append((category, reason, days))
        return {"request_id": "r1", "status": "pending"}

    target = AgentControlTarget(
        agent=None,  # type: ignore[arg-type]  # not reached
        policy=lambda: None,
        consent=lambda: None,
        clock=lambda: 0.0,
        parts=ControlParts(request_exemption=request),
    )
    with pytest.raises(ControlError) as refused:
        target.exemption_request("battery", "often away from a charger", 366)
    assert refused.value.code == "bad_request"
    assert sent == []


def test_the_cli_refuses_it_before_asking_the_agent(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "overt", "exemption", "request", "--category", "bandwidth",
         "--reason", "metered line", "--days", "366", "--socket", str(tmp_path / "none.sock")],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "between 1 and 365" in done.stderr
