"""The README's policy walkthrough works when pasted into a shell."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- walkthrough:"


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    match = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert match, "README walkthrough block not found"
    return match.group(1)


def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "policies" / "examples", tmp_path / "policies" / "examples")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "it-1.key").stat().st_mode & 0o777 == 0o600
    assert "OK: policy version 1" in result.stdout
    assert "rejected, as it should be" in result.stdout
    assert "bad signature" in result.stderr
    assert (tmp_path / "trust").is_dir()
