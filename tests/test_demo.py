"""`make run` as a newcomer meets it: the demo on a private desktop, end to end.

Runs ``tools/demo.py`` (what ``make run`` runs) with ``--exit-after-demo`` on
a private Xvfb: keys, the signed policy, a real collector process, the
agent's enrollment, the tray starting the agent, a scripted session in the
work app, upload, export. It must end with exit 0, say where the admin pages
are and how to export, leave no process of its own running, and have
exported the text that was typed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.desktop
def test_make_run_demo_captures_uploads_and_exports(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    before = {p.pid for p in psutil.process_iter()}
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo.py"), "--workdir", str(workdir),
         "--port", "0", "--private-display", "--exit-after-demo"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/admin/" in result.stdout
    assert "overt export --data" in result.stdout
    assert "uploaded" in result.stdout
    texts = [
        json.loads(line).get("text", "")
        for line in (workdir / "dataset" / "metadata.jsonl").read_text().splitlines()
    ]
    assert any("Quarterly numbers look good." in t for t in texts)
    leftovers = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.pid not in before and str(workdir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
