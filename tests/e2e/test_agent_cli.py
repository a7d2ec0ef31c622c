"""``overt agent`` as a person runs it: consent on the terminal, run, inspect batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.desktop import AppWindow, Desktop, wait_for
from tests.e2e.conftest import WORKAPP_GEOMETRY

ROOT = Path(__file__).resolve().parents[2]
OVERT = [sys.executable, "-m", "overt"]


def overt(*args: str | Path, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OVERT, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def signed_policy(tmp_path: Path) -> Path:
    assert overt("policy", "keygen", "--out", "it", cwd=tmp_path).returncode == 0
    doc = json.loads((ROOT / "policies/examples/test-workapp.json").read_text(encoding="utf-8"))
    now = datetime.now(UTC).replace(microsecond=0)
    doc["issued_at"] = (now - timedelta(hours=1)).isoformat()
    doc["expires"] = (now + timedelta(days=7)).isoformat()
    (tmp_path / "p.json").write_text(json.dumps(doc), encoding="utf-8")
    signed = overt("policy", "sign", "p.json", "--key", "it.key", "--out", "p.signed.json",
                   cwd=tmp_path)  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    return tmp_path / "p.signed.json"


DEVICE = ("--trust", "it.pub", "--tenant", "example-corp", "--device-group", "office")
#: Each agent gets its own control socket: others may be running on this machine.
SOCKET = ("--socket", "ctl.sock")


def test_run_without_a_display_says_how_to_fix_it(signed_policy: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = overt("agent", "run", "--policy", signed_policy, *DEVICE, "--state", "st",
                   "--sink", "out", "--socket", "ctl.sock", "--minutes", "0.05", cwd=tmp_path,
                   env=env)  # fmt: skip
    assert result.returncode == 1
    assert "no X display: set DISPLAY, or run under Xvfb" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_consent_requires_an_answer_when_there_is_no_terminal(
    signed_policy: Path, tmp_path: Path
) -> None:
    result = overt("agent", "consent", "--policy", signed_policy, *DEVICE, "--state", "st",
                   cwd=tmp_path, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 2
    assert "pass --accept or --decline" in result.stderr
    assert not (tmp_path / "st" / "consent.json").exists()


def test_a_tampered_policy_is_refused_with_its_cause(signed_policy: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(signed_policy.read_bytes().replace(b'"payload":"e', b'"payload":"f'))
    result = overt("agent", "consent", "--policy", tampered, *DEVICE, "--state", "st",
                   "--accept", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert "bad signature" in result.stderr


@pytest.mark.desktop
def test_consent_then_run_writes_batches_a_person_can_read(
    desktop: Desktop, workapp: AppWindow, signed_policy: Path, tmp_path: Path
) -> None:
    consent = overt("agent", "consent", "--policy", signed_policy, *DEVICE, "--state", "st",
                    "--accept", cwd=tmp_path)  # fmt: skip
    assert consent.returncode == 0, consent.stderr
    assert "overt-workapp" in consent.stdout  # the notice names the captured app
    run = subprocess.Popen(
        [
            *OVERT,
            "agent",
            "run",
            *DEVICE,
            "--state",
            "st",
            "--sink",
            "out",
            *SOCKET,
            "--minutes",
            "1",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: (tmp_path / "st" / "device.json").exists(), 20, what="the agent to start")
        time.sleep(1.0)  # the self-test and hook installation
        wx, wy, _, _ = WORKAPP_GEOMETRY
        desktop.xdotool("windowactivate", "--sync", workapp.window_id)
        desktop.xdotool("mousemove", wx + 400, wy + 250, "click", 1)
        desktop.xdotool("type", "--delay", "20", "weekly numbers")
        time.sleep(0.5)
    finally:
        run.terminate()
        out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    assert "capturing under policy version 1" in out
    assert "1 batches written" in out
    listing = overt("agent", "batches", "out", "--records", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "apps: overt-workapp" in listing.stdout
    assert "text='weekly numbers'" in listing.stdout
