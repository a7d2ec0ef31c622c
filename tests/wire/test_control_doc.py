"""docs/CONTROL.md's tables are what the control API's models say.

The tables between ``<!-- generated: NAME -->`` markers are written by
``tools/control_doc.py`` from ``overt.wire.control``,
``overt.wire.control_results`` and ``overt.wire.notice``; this test fails
when the checked-in document differs (run ``python tools/control_doc.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from overt.wire import control, control_results
from overt.wire.notice import CaptureNotice

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("control_doc", ROOT / "tools/control_doc.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return _tool()


def test_the_checked_in_document_is_what_the_models_generate(tool: ModuleType) -> None:
    current = (ROOT / "docs/CONTROL.md").read_text(encoding="utf-8")
    assert tool.generate(current) == current, "run: python tools/control_doc.py"


def test_every_command_argument_result_field_reason_and_code_is_in_the_document() -> None:
    text = (ROOT / "docs/CONTROL.md").read_text(encoding="utf-8")
    for command in control.COMMANDS.values():
        assert f"| `{command.name}`" in text
        for name in command.arguments.model_fields:
            assert f"| `{name}` |" in text
    results = {c.result for c in control.COMMANDS.values()} | {CaptureNotice}
    for model in results:
        assert f"### {model.__name__}" in text
    for code in control.ErrorCode:
        assert f"| `{code.value}` |" in text
    for reason in control_results.REASON_TEXT:
        assert f"| `{reason}` |" in text


def test_a_document_missing_a_block_is_refused(tool: ModuleType) -> None:
    text = (ROOT / "docs/CONTROL.md").read_text(encoding="utf-8")
    start = text.index("<!-- generated: reasons -->")
    end = text.index("<!-- end: reasons -->") + len("<!-- end: reasons -->")
    with pytest.raises(ValueError, match="no block for reasons"):
        tool.generate(text[:start] + text[end:])


def test_a_changed_table_is_noticed_and_written_back(tool: ModuleType) -> None:
    text = (ROOT / "docs/CONTROL.md").read_text(encoding="utf-8")
    edited = text.replace("| `busy` |", "| `busy-ish` |")
    assert edited != text
    assert tool.generate(edited) == text
