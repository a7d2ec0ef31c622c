"""The whole story, as the people in it live it, on one virtual desktop.

Real processes throughout: a collector (with its admin pages), the tray
(which starts the agent), the work app, Chromium for the admin. In order:

1. the tray shows the capture notice; the employee accepts it there;
2. they type and click in the work app: captured;
3. they pause from the tray menu and type on: nothing reaches the agent;
4. the pause ends by itself (the policy's maximum is one minute);
5. they type something they regret and discard the last minute before the
   review window lets it go: it never reaches the collector;
6. they request an exemption; an admin signs in to the collector's pages in
   Chromium and approves it; the agent picks up the grant and stops capturing;
7. the data team exports: the dataset holds exactly what was kept.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.desktop import AppWindow, Desktop, wait_for

from .conftest import WORKAPP_GEOMETRY
from .stack import Stack, ledger_seqs, make_stack, overt
from .test_tray import is_red, start_tray, window

pytestmark = pytest.mark.desktop

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PASSWORD = "correct horse battery staple"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = make_stack(tmp_path)
    # One-minute pauses and a one-minute review window keep the story short.
    stack.make_policy(pause={"max_minutes": 1}, review_window_minutes=1)
    stack.start_collector()
    overt("collector", "admin-user", "--data", stack.data, "--name", "alice",
          stdin=PASSWORD + "\n")  # fmt: skip
    yield stack
    stack.stop()


def status(sock: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "overt", "status", "--json", "--socket", str(sock)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return dict(json.loads(result.stdout)) if result.returncode == 0 else {}


def events_seen(sock: Path) -> int:
    return int(status(sock).get("counts", {}).get("events_seen", -1))


def spans_spooled(state: Path) -> int:
    db = state / "spool" / "v1" / "spool.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT counts FROM ledger").fetchall()
    return sum(json.loads(counts).get("text_spans", 0) for (counts,) in rows)


def type_in(desktop: Desktop, workapp: AppWindow, text: str, click: tuple[int, int]) -> None:
    wx, wy, _, _ = WORKAPP_GEOMETRY
    desktop.xdotool("windowactivate", "--sync", workapp.window_id)
    desktop.xdotool("mousemove", wx + click[0], wy + click[1], "click", 1)
    desktop.xdotool("type", "--delay", "30", text)
    time.sleep(1.0)  # a typing pause closes the text span


def approve_in_browser(url: str, request_id: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/admin/")
            page.get_by_label("Name").fill("alice")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Exemption requests", level=1)).to_be_visible()
            request = page.locator(f"#request-{request_id}")
            expect(request).to_contain_text("Handles sensitive information")
            request.get_by_label("Grant for (days)").fill("3")
            request.get_by_role("button", name="Approve").click()
            expect(page.get_by_role("status").first).to_contain_text(
                f"Approved request {request_id}"
            )
        finally:
            browser.close()


def test_consent_capture_pause_resume_discard_exemption_export(
    desktop: Desktop, tray_host: object, workapp: AppWindow, stack: Stack, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    sock = Path(f"/tmp/ovt-story-{tmp_path.name}.sock")
    stack.enroll(state)
    tray = start_tray(
        desktop, sock, "--", "--trust", str(stack.keys / "it.pub"), "--state", str(state),
        "--batch-seconds", "1",
    )  # fmt: skip
    try:
        # 1. The notice comes up by itself; the employee accepts it.
        notice = window(desktop, "Overt — capture notice")
        desktop.xdotool("windowactivate", "--sync", notice)
        desktop.xdotool("key", "alt+a")
        wait_for(lambda: status(sock).get("capturing"), 20, what="capture after consent")
        wait_for(lambda: is_red(tray.icon_colour()), 10, what="the red capturing icon")

        # 2. Work in the work app, until a batch holds it (a pause drops what
        #    is not batched yet, by design).
        type_in(desktop, workapp, "kept words", (400, 250))
        wait_for(lambda: spans_spooled(state) >= 1, 20, what="the text to be batched")

        # 3. Pause from the tray menu; typing now reaches nothing.
        tray.click(tray.open_menu(), "pause:1")
        wait_for(lambda: status(sock).get("reason") == "paused", 10, what="the pause")
        before = events_seen(sock)
        type_in(desktop, workapp, "typed while paused", (400, 280))
        assert events_seen(sock) == before

        # 4. The pause ends by itself.
        wait_for(lambda: status(sock).get("capturing"), 90, what="the automatic resume")

        # 5. Something regretted, discarded while the review window holds it.
        type_in(desktop, workapp, "regretted words", (400, 310))
        time.sleep(1.5)  # past the batch age: it is sealed and held in the spool
        discarded = json.loads(overt("discard", "1", "--json", "--socket", sock))
        assert discarded["batches_deleted"] >= 1

        # 6. An exemption, approved by an admin in the browser, stops capture.
        asked = json.loads(
            overt(
                "exemption",
                "request",
                "--category",
                "sensitive",
                "--reason",
                "I handle patient records this week",
                "--days",
                "3",
                "--json",
                "--socket",
                sock,
            )
        )
        approve_in_browser(stack.url, asked["request_id"])
        wait_for(lambda: status(sock).get("reason") == "exempt", 30, what="the grant to apply")
        assert [e["category"] for e in status(sock)["exemptions"]] == ["sensitive"]
        before = events_seen(sock)
        type_in(desktop, workapp, "typed while exempt", (400, 340))
        assert events_seen(sock) == before

        # Everything kept leaves once the review window has passed.
        def settled() -> bool:
            rows = ledger_seqs(state).values()
            return bool(rows) and all(st in ("uploaded", "discarded") for _, st in rows)

        wait_for(settled, 120, what="the kept batches to be uploaded")
    finally:
        tray.click(tray.open_menu(), "quit")
        tray.proc.wait(30)

    # 7. The data team's export holds exactly what was kept.
    ledger = ledger_seqs(state)
    stored = {seq for _, seq, _ in stack.stored()}
    assert stored == {seq for seq, (_, st) in ledger.items() if st == "uploaded"}
    assert {seq for seq, (_, st) in ledger.items() if st == "discarded"}.isdisjoint(stored)
    out = tmp_path / "dataset"
    overt("export", "--data", stack.data, "--key", stack.keys / "dataset.key", "--out", out)
    actions = [json.loads(line) for line in (out / "actions.jsonl").read_text().splitlines()]
    texts = [a["text"] for a in actions if a["action"] == "text"]
    assert texts == ["kept words"]
    clicks = [(a["x"], a["y"]) for a in actions if a["action"] == "click"]
    assert clicks == [(400, 250)]
