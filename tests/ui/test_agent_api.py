"""The tray's API over the real control socket: every command, and every failure."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.control import ControlServer
from tests.ui.fake_agent import FakeAgent, InProcessClient, ManualClock, sample_batches
from ui.agent_api import ControlAgentApi
from ui.errors import AgentRefused, AgentUnreachable, BadReply


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Short: a Unix socket path holds about 100 bytes.
    path = Path(tempfile.mkdtemp(prefix="ovt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent() -> FakeAgent:
    clock = ManualClock()
    return FakeAgent(clock=clock, batches=sample_batches(clock.now_ms))


@pytest.fixture
def api(agent: FakeAgent, socket_dir: Path) -> Iterator[ControlAgentApi]:
    server = ControlServer(agent, socket_dir / "agent.sock")
    server.start()
    try:
        yield ControlAgentApi(socket_dir / "agent.sock", timeout=2.0)
    finally:
        server.stop()


def test_every_command_round_trips(api: ControlAgentApi, agent: FakeAgent) -> None:
    assert api.status().reason == "capturing"
    assert api.pause(5).paused
    assert not api.resume().paused
    assert api.discard(15).batches_deleted == 2
    offer = api.consent_show()
    assert offer.policy_version == 3
    assert offer.notice.organisation == "Example Corp"
    assert api.consent_decline(3).reason == "consent_declined"
    assert api.consent_accept(3).reason == "capturing"
    request_id = api.exemption_request("bandwidth", "metered line", 30)
    assert [r.request_id for r in api.exemption_list()] == [request_id]
    ledger = api.ledger(7)
    assert len(ledger.batches) == len(agent.batches)
    assert [name for name, _ in agent.calls] == [
        "pause", "resume", "discard", "consent_decline", "consent_accept",
        "exemption_request", "exemption_list", "ledger",
    ]  # fmt: skip


def test_a_refusal_carries_the_agents_code_and_words(api: ControlAgentApi) -> None:
    with pytest.raises(AgentRefused) as refused:
        api.consent_accept(99)
    assert refused.value.code == "not_allowed"
    assert refused.value.message == "that is not the policy in force"


def test_the_server_checks_arguments_before_the_agent_sees_them(
    api: ControlAgentApi, agent: FakeAgent
) -> None:
    with pytest.raises(AgentRefused) as refused:
        api.discard(0)
    assert refused.value.code == "bad_request"
    assert agent.calls == []


def test_no_agent_is_unreachable(socket_dir: Path) -> None:
    api = ControlAgentApi(socket_dir / "agent.sock", timeout=1.0)
    with pytest.raises(AgentUnreachable, match="the agent is not running"):
        api.status()


class OddAgent(InProcessClient):
    """An agent of another version: its status answer is not this version's."""

    def call(self, cmd: str, args: Any = None) -> dict[str, Any]:
        answer = super().call(cmd, args)
        return {**answer, "capturing": "yes"} if cmd == "status" else answer


def test_a_wrong_answer_is_a_bad_reply_naming_the_field(agent: FakeAgent) -> None:
    api = ControlAgentApi(client=OddAgent(agent))
    with pytest.raises(BadReply, match=r"status\.capturing"):
        api.status()
    assert api.discard(5).batches_deleted >= 0  # the other answers still read


def test_the_agents_refusal_of_a_wrong_answer_from_its_own_parts_is_a_refusal(
    api: ControlAgentApi, agent: FakeAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    def odd() -> dict[str, Any]:
        return {"capturing": "yes"}

    monkeypatch.setattr(agent, "status", odd)
    with pytest.raises(AgentRefused) as refused:
        api.status()
    assert refused.value.code == "internal"


def test_an_agent_that_never_answers_is_unreachable_not_a_hang(socket_dir: Path) -> None:
    import socket

    path = socket_dir / "agent.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    try:
        api = ControlAgentApi(path, timeout=0.3)
        with pytest.raises(AgentUnreachable, match="not answering"):
            api.status()
    finally:
        listener.close()
