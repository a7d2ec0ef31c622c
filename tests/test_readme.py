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


def _documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_documents_link_only_to_files_inside_the_repository() -> None:
    bad = []
    for doc in _documents():
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://", target):
                continue
            resolved = (doc.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target}")
    assert bad == []


def test_the_readme_names_docs_that_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:docs/)?[A-Z]+\.md)`", text))
    assert "docs/ARCHITECTURE.md" in text
    missing = [n for n in named if not (ROOT / n).exists() and not (ROOT / "docs" / n).exists()]
    assert missing == []
