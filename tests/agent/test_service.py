"""The agent process's wiring: one state directory, one trust holder, policy in memory.

The collector is an ``httpx.MockTransport``; delivery against the real one
is tests/e2e/test_delivery.py.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import agent.local_state
from agent.config import AgentConfig
from agent.events import AppIdentity, Rect, WindowInfo
from agent.local_state import Enrollment, LocalState
from agent.service import AgentService, ServiceSettings
from agent.sources._fake import FakeCanary, FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources.canary import CANARY_CLASS, Canary
from agent.sources.power import FakeConditions

from ._signed import TRUSTED, clock, grant, signed

WORKAPP = WindowInfo(
    window_id=1,
    app=AppIdentity(wm_instance="overt-workapp", wm_class="overt-workapp"),
    title="Work",
    rect=Rect(100, 100, 800, 600),
    pid=10,
)


class Collector:
    """Serves a policy and a grant list; everything else is not found."""

    def __init__(self) -> None:
        self.policy: bytes | None = None
        self.grants: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/policy" and self.policy is not None:
            return httpx.Response(
                200, content=self.policy, headers={"ETag": str(hash(self.policy))}
            )
        if request.url.path == "/v1/grants":
            return httpx.Response(
                200, json={"grants": [base64.b64encode(g).decode() for g in self.grants]}
            )
        return httpx.Response(404, json={"error": "not_found"})


def wait(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def make_service(state: Path, collector: Collector) -> AgentService:
    probe = FakeWindowProbe()
    probe.add(WORKAPP, focus=True)

    def canary() -> Canary:
        rect = Rect(1500, 50, 160, 90)
        opened = FakeCanary(rect)
        identity = AppIdentity(wm_instance=CANARY_CLASS, wm_class=CANARY_CLASS)
        probe.add(WindowInfo(opened.window_id, identity, "Overt filter self-test", rect))
        return opened

    config = AgentConfig(
        trusted=TRUSTED, tenant="acme", device_group="office", state_dir=state, clock=clock
    )
    http = httpx.Client(base_url="http://collector.test", transport=httpx.MockTransport(collector))
    return AgentService(
        config,
        probe=probe,
        hooks=FakeInputHooks(clock),
        grabber=FakeScreenGrabber(),
        conditions=FakeConditions(),
        socket_path=None,
        canary=canary,
        http=http,
        settings=ServiceSettings(sync_interval_s=0.05),
    )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    local = LocalState(tmp_path / "state")
    local.save_enrollment(
        Enrollment("http://collector.test", local.device_id(), "acme", "office", clock())
    )
    return tmp_path / "state"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every state directory a LocalState is opened on from now on."""
    directories: list[Path] = []
    real = agent.local_state.LocalState.__init__

    def recording(self: LocalState, directory: Path) -> None:
        directories.append(Path(directory))
        real(self, directory)

    monkeypatch.setattr(agent.local_state.LocalState, "__init__", recording)
    return directories


def test_the_state_directory_is_opened_once_per_process(state: Path, opened: list[Path]) -> None:
    collector = Collector()
    collector.policy = signed(1)
    with make_service(state, collector) as service:
        assert service.agent.trust is service.trust
        wait(lambda: service.agent.status().policy_version == 1)
    assert opened == [state]


def test_a_policy_and_grants_from_the_collector_reach_capture_in_memory(state: Path) -> None:
    collector = Collector()
    collector.policy = signed(1)
    with make_service(state, collector) as service:
        agent = service.agent
        wait(lambda: agent.status().policy_version == 1)
        collector.policy = signed(2)
        collector.grants = [grant(agent.device_id)]
        wait(lambda: agent.status().policy_version == 2)
        wait(lambda: [g.grant_id for g in agent.status().grants] == ["g-other"])
        assert agent.policy is service.trust.in_force.policy
