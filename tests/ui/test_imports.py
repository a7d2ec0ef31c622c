"""The tray and the employee CLI reach the agent only through the control client.

``pyproject.toml``'s import contract forbids the agent's modules by name;
this test holds the other side, so that a module added to the agent later is
covered too: of ours, ``ui`` imports only the control client and its errors,
``overt.wire`` and ``overt.files``, and the client itself nothing of the
agent but its errors.
"""

from __future__ import annotations

import grimp

OURS = ("agent", "ui", "overt", "policies", "collector")
CLIENT = {"agent.control.client", "agent.control.errors"}


def _allowed_for_ui(module: str) -> bool:
    return (
        module in CLIENT
        or module.split(".")[0] == "ui"
        or module == "overt.wire"
        or module.startswith("overt.wire.")
        or module == "overt.files"
    )


def test_ui_imports_of_ours_only_the_control_client_and_the_wire_formats() -> None:
    graph = grimp.build_graph(*OURS, cache_dir=None)
    imported = {
        target
        for module in graph.find_descendants("ui") | {"ui"}
        for target in graph.find_modules_directly_imported_by(module)
        if target.split(".")[0] in OURS
    }
    assert {m for m in imported if not _allowed_for_ui(m)} == set()
    assert imported >= CLIENT


def test_the_control_client_imports_nothing_of_the_agent_but_its_errors() -> None:
    graph = grimp.build_graph(*OURS, cache_dir=None)
    upstream = graph.find_upstream_modules("agent.control.client")
    assert {m for m in upstream if m.startswith("agent")} == {"agent.control.errors"}
    assert {m.split(".")[0] for m in upstream} <= {"agent", "overt"}
