"""Helpers shared by the tray's widget tests: a fake-agent stack and screenshots.

Importing this module makes Qt default to the offscreen platform (no display
needed); a QT_QPA_PLATFORM already set by the person running the tests wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import QWidget

from tests.ui.fake_agent import FakeAgent, InProcessClient, ManualClock
from ui.agent_api import ControlAgentApi

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "ui"


@dataclass
class AgentStack:
    """A fake agent, the client that reaches it, and the tray's API over both."""

    clock: ManualClock
    agent: FakeAgent
    client: InProcessClient
    api: ControlAgentApi


def agent_stack(**agent_fields: object) -> AgentStack:
    clock = ManualClock()
    agent = FakeAgent(clock=clock, **agent_fields)  # type: ignore[arg-type]
    client = InProcessClient(agent)
    return AgentStack(clock, agent, client, ControlAgentApi(client=client))


def save_screenshot(widget: QWidget, name: str) -> Path:
    """Grab ``widget`` into artifacts/ui/<name>.png and return the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert widget.grab().save(str(path)), f"could not save {path}"
    return path
