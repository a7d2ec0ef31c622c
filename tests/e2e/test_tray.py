"""The real tray on a real (virtual) desktop: Xvfb, openbox, trayer, XTEST clicks.

``overt tray`` runs as its own process with DISPLAY set, as a person would
start it. The agent behind the control socket is a real ``ControlServer``
from ``agent.control`` in this test process, driving a fake agent target
(``tests/ui/fake_agent.py``) whose state the tests read: a click on "Pause
for 30 minutes" must pause *the agent*, not just change the icon. The icon's
colour is read back from the screen; the tray's menu is found through its
``--menu-map`` file and clicked with xdotool. Screenshots of the menu, the
notification and each window go to ``artifacts/tray-e2e/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.control import ControlClient, ControlServer
from tests.desktop import REPO_ROOT, Desktop, wait_for
from tests.ui.fake_agent import FakeAgent, sample_batches

pytestmark = pytest.mark.desktop

SHOTS = "tray-e2e"

#: The menu map's entries: id -> {"label", "enabled", "rect": [x, y, w, h]}.
Entries = dict[str, Any]


def last_call(agent: FakeAgent) -> tuple[str, tuple[Any, ...]]:
    return agent.calls[-1]


@dataclass
class WallClock:
    """Epoch milliseconds, plus an offset a test may move forward."""

    offset_ms: int = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.offset_ms


@dataclass
class AgentEnd:
    agent: FakeAgent
    clock: WallClock
    socket: Path
    directory: Path


@pytest.fixture
def agent_end() -> Iterator[AgentEnd]:
    # A short directory: a Unix socket path holds about 100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="ovt-", dir="/tmp"))
    clock = WallClock()
    agent = FakeAgent(clock=clock, batches=sample_batches(clock()))
    server = ControlServer(agent, directory / "agent.sock")
    server.start()
    try:
        yield AgentEnd(agent, clock, directory / "agent.sock", directory)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class RunningTray:
    desktop: Desktop
    proc: subprocess.Popen[bytes]
    menu_map: Path
    icon: tuple[int, int, int, int] = (0, 0, 0, 0)
    opened: int = 0
    shots: list[Path] = field(default_factory=list)

    @property
    def log(self) -> str:
        return self.desktop.log_of(self.proc)

    def centre(self) -> tuple[int, int]:
        x, y, w, h = self.icon
        return x + w // 2, y + h // 2

    def icon_colour(self) -> tuple[int, int, int]:
        """The colour a little left of the icon's centre (on the disc, off the bars)."""
        x, y, w, h = self.icon
        return pixel(x + w // 2 - 5, y + h // 2)

    def open_menu(self, button: int = 3) -> Entries:
        """Click the icon; return the menu's entries once it is on the screen."""
        x, y = self.centre()
        self.desktop.xdotool("mousemove", x, y, "click", button)
        wanted = self.opened + 1

        def opened() -> Any:
            self.alive()
            try:
                data = json.loads(self.menu_map.read_text(encoding="utf-8"))
            except (FileNotFoundError, json.JSONDecodeError):
                return None
            return data if data["opened"] >= wanted else None

        data = wait_for(opened, 10, interval=0.05, what="the tray menu to open")
        self.opened = int(data["opened"])
        entries: Entries = data["entries"]
        return entries

    def click(self, entries: Entries, entry_id: str) -> None:
        entry = entries[entry_id]
        assert entry["enabled"], f"{entry_id} is not enabled: {entry}"
        x, y, w, h = entry["rect"]
        # Move first, then click: a menu entry highlights on hover.
        self.desktop.xdotool("mousemove", x + w // 2, y + h // 2)
        self.desktop.xdotool("click", 1)

    def exited_cleanly(self, timeout: float) -> None:
        """Wait for the tray to exit; fail with its log unless the status is 0."""
        code = self.proc.wait(timeout)
        assert code == 0, f"the tray exited with {code}:\n{self.log}"

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the tray exited with {self.proc.returncode}:\n{self.log}")

    def shot(self, name: str) -> Path:
        path = self.desktop.screenshot(f"{SHOTS}/{name}.png")
        self.shots.append(path)
        return path


def pixel(x: int, y: int) -> tuple[int, int, int]:
    import mss

    factory = getattr(mss, "MSS", None) or mss.mss
    with factory() as sct:
        shot = sct.grab({"left": x, "top": y, "width": 1, "height": 1})
        r, g, b = shot.pixel(0, 0)
    return int(r), int(g), int(b)


def is_red(c: tuple[int, int, int]) -> bool:
    return c[0] > 180 and c[1] < 90 and c[2] < 90


def is_amber(c: tuple[int, int, int]) -> bool:
    return c[0] > 200 and 120 < c[1] < 200 and c[2] < 80


def is_grey(c: tuple[int, int, int]) -> bool:
    return max(c) - min(c) < 16 and 90 < c[0] < 200


def tray_icon_window(desktop: Desktop, pid: int) -> tuple[int, int, int, int] | None:
    """The tray's icon, embedded in trayer: the window of ``pid`` inside trayer's panel."""
    from Xlib import X, error

    d = desktop.x()
    root = d.screen().root
    pid_atom = d.intern_atom("_NET_WM_PID")

    def walk(win: object) -> tuple[int, int, int, int] | None:
        try:
            children = win.query_tree().children  # type: ignore[attr-defined]
        except error.XError:
            return None
        for child in children:
            try:
                cls = child.get_wm_class()
                prop = child.get_full_property(pid_atom, X.AnyPropertyType)
                if cls and "overt-tray" in cls and prop and int(prop.value[0]) == pid:
                    parent = child.query_tree().parent
                    if parent.id == root.id:
                        continue  # a top-level window of the tray, not the icon
                    geo = child.get_geometry()
                    pos = root.translate_coords(child, 0, 0)
                    if child.get_attributes().map_state == X.IsViewable:
                        return int(pos.x), int(pos.y), int(geo.width), int(geo.height)
            except error.XError:
                continue
            found = walk(child)
            if found:
                return found
        return None

    return walk(root)


def start_tray(desktop: Desktop, socket: Path, *extra: str) -> RunningTray:
    menu_map = socket.with_name("menu.json")
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "PYTHONPATH": str(REPO_ROOT)}
    proc = desktop.spawn(
        [sys.executable, "-m", "overt", "tray", "--socket", str(socket), "--poll", "0.3",
         "--menu-map", str(menu_map), "-v", *extra],
        env=env,
    )  # fmt: skip
    tray = RunningTray(desktop, proc, menu_map)

    def icon() -> tuple[int, int, int, int] | None:
        tray.alive()
        return tray_icon_window(desktop, proc.pid)

    found = wait_for(icon, 20, interval=0.1, what="the tray icon inside trayer")
    assert found is not None
    tray.icon = found
    return tray


@pytest.fixture
def tray(desktop: Desktop, tray_host: object, agent_end: AgentEnd) -> Iterator[RunningTray]:
    # No --no-agent: an agent already listens, so the tray must only connect.
    running = start_tray(desktop, agent_end.socket, "--", "--must-not-be-started")
    try:
        yield running
    finally:
        desktop.kill(running.proc)


def balloon(desktop: Desktop, pid: int) -> tuple[int, int, int, int] | None:
    """A notification balloon of the tray: a mapped override-redirect window of ``pid``."""
    from Xlib import X, error

    d = desktop.x()
    root = d.screen().root
    pid_atom = d.intern_atom("_NET_WM_PID")
    for win in root.query_tree().children:
        try:
            attrs = win.get_attributes()
            if attrs.map_state != X.IsViewable or not attrs.override_redirect:
                continue
            prop = win.get_full_property(pid_atom, X.AnyPropertyType)
            if not prop or int(prop.value[0]) != pid:
                continue
            geo = win.get_geometry()
            if geo.width > 150 and geo.height < 200:
                return int(geo.x), int(geo.y), int(geo.width), int(geo.height)
        except error.XError:
            continue
    return None


def window(desktop: Desktop, title: str) -> int:
    found = wait_for(
        lambda: desktop.find_window("overt-tray", title), 10, interval=0.05, what=title
    )
    assert found is not None
    return found


def test_pause_resume_and_the_announced_automatic_resume(
    tray: RunningTray, agent_end: AgentEnd
) -> None:
    agent = agent_end.agent
    wait_for(lambda: is_red(tray.icon_colour()), 10, what="a red (capturing) icon")
    assert "an agent is already listening; connecting to it" in tray.log

    entries = tray.open_menu()
    assert entries["status"]["label"] == "Capturing in allow-listed apps"
    tray.shot("menu-capturing")
    tray.click(entries, "pause:30")
    wait_for(lambda: agent.paused, 10, what="the agent to be paused")
    assert last_call(agent) == ("pause", (30,))
    wait_for(lambda: is_amber(tray.icon_colour()), 10, what="an amber (paused) icon")

    entries = tray.open_menu()
    assert str(entries["status"]["label"]).startswith("Paused — resumes in 30 min")
    assert not entries["pause:30"]["enabled"]
    tray.shot("menu-paused")
    tray.click(entries, "resume")
    wait_for(lambda: not agent.paused, 10, what="the agent to resume")
    assert last_call(agent) == ("resume", ())
    wait_for(lambda: is_red(tray.icon_colour()), 10, what="the icon to turn red again")

    # A left click opens the same menu.
    entries = tray.open_menu(button=1)
    tray.click(entries, "pause:5")
    wait_for(lambda: agent.paused, 10, what="the five-minute pause")
    assert last_call(agent) == ("pause", (5,))
    # Move the agent's clock to three seconds before the end of the pause.
    assert agent.paused_until_ms is not None
    agent_end.clock.offset_ms += agent.paused_until_ms - agent.now_ms - 3000
    wait_for(lambda: "notification: Capture resumes soon" in tray.log, 10,
             what="the announcement before the resume")  # fmt: skip
    wait_for(lambda: balloon(tray.desktop, tray.proc.pid), 5, what="the notification balloon")
    tray.shot("notification-resumes-soon")
    wait_for(lambda: "notification: Capture resumed" in tray.log, 15,
             what="the announcement of the resume")  # fmt: skip
    assert not agent.paused
    wait_for(lambda: is_red(tray.icon_colour()), 10, what="a red icon after the resume")
    wait_for(lambda: balloon(tray.desktop, tray.proc.pid), 5, what="the second balloon")
    tray.shot("notification-resumed")


def test_consent_windows_and_quit(desktop: Desktop, tray: RunningTray, agent_end: AgentEnd) -> None:
    agent = agent_end.agent
    wait_for(lambda: is_red(tray.icon_colour()), 10, what="a red icon")
    agent.consent = None  # e.g. a new policy that needs an answer
    notice = window(desktop, "Overt — capture notice")
    wait_for(lambda: not is_red(tray.icon_colour()), 10, what="the icon to stop being red")
    tray.shot("consent-notice")
    desktop.xdotool("windowactivate", "--sync", notice)
    desktop.xdotool("key", "alt+a")
    wait_for(lambda: agent.consent == "accepted", 10, what="the answer to reach the agent")
    assert last_call(agent) == ("consent_accept", (3,))
    wait_for(lambda: desktop.find_window("overt-tray", "Overt — capture notice") is None, 10,
             what="the notice to close")  # fmt: skip
    wait_for(lambda: is_red(tray.icon_colour()), 10, what="capture on again")

    tray.click(tray.open_menu(), "captured")
    captured = window(desktop, "Overt — what is captured")
    wait_for(lambda: ("ledger", (7,)) in agent.calls, 10, what="the ledger request")
    tray.shot("what-is-captured-policy")
    desktop.xdotool("windowactivate", "--sync", captured)
    desktop.xdotool("key", "ctrl+Tab")
    tray.shot("what-is-captured-ledger")
    desktop.xdotool("key", "Escape")
    wait_for(lambda: desktop.find_window("overt-tray", "Overt — what is captured") is None, 10,
             what="the window to close")  # fmt: skip

    tray.click(tray.open_menu(), "exemption")
    request = window(desktop, "Overt — request an exemption")
    desktop.xdotool("windowactivate", "--sync", request)
    desktop.xdotool("key", "alt+r")
    desktop.xdotool("type", "--delay", "5", "Home internet is capped")
    desktop.xdotool("key", "alt+s")
    wait_for(lambda: agent.requests, 10, what="the exemption request")
    assert agent.requests[0]["reason"] == "Home internet is capped"
    assert agent.requests[0]["category"] == "bandwidth"
    # The window asks for the list again after sending; give it a moment to
    # draw the answer before the picture (nothing is asserted on time).
    wait_for(lambda: last_call(agent) == ("exemption_list", ()), 10, what="the list reload")
    time.sleep(0.5)
    tray.shot("exemption-request")

    tray.click(tray.open_menu(), "quit")
    tray.exited_cleanly(10)
    # The tray did not start this agent, so quitting leaves it running.
    assert ControlClient(agent_end.socket, timeout=2).status().reason == "capturing"
    assert "stopping the agent" not in tray.log


def test_a_second_tray_for_the_same_socket_leaves(
    desktop: Desktop, tray: RunningTray, agent_end: AgentEnd
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "QT_QPA_PLATFORM": "xcb"}
    second = subprocess.run(
        [sys.executable, "-m", "overt", "tray", "--socket", str(agent_end.socket), "--no-agent"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert second.returncode == 0
    assert "is already running" in second.stderr
    tray.alive()


def test_without_an_agent_the_tray_starts_one_and_says_what_became_of_it(
    desktop: Desktop, tray_host: object
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="ovt-", dir="/tmp"))
    try:
        # `overt agent run --help` is a real agent command that exits at once
        # (status 0) without ever listening.
        tray = start_tray(desktop, directory / "agent.sock", "--", "--help")
        try:
            wait_for(lambda: is_grey(tray.icon_colour()) or is_grey(pixel(*tray.centre())),
                     10, what="the grey not-running icon")  # fmt: skip
            wait_for(lambda: "started the agent, pid" in tray.log, 10, what="the agent start")

            def settled() -> Entries | None:
                # The agent it started exits at once; until the tray's next
                # look, it may still say "starting".
                entries = tray.open_menu()
                if entries["status"]["label"] == "Not capturing: the agent is not running":
                    return entries
                desktop.xdotool("mousemove", 600, 600, "click", 1)  # close the menu
                return None

            entries = wait_for(settled, 15, interval=0.3, what="the agent's exit to show")
            assert entries is not None
            assert entries["status"]["detail"] == "The agent stopped (exit status 0)."
            tray.shot("menu-no-agent")
            assert entries["start_agent"]["enabled"]
            assert not entries["pause:30"]["enabled"]
            tray.click(entries, "quit")
            tray.exited_cleanly(10)
        finally:
            desktop.kill(tray.proc)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _overt(*args: str | Path, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "overt", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_tray_starts_the_real_agent_and_quit_stops_it(
    desktop: Desktop, tray_host: object
) -> None:
    import psutil

    directory = Path(tempfile.mkdtemp(prefix="ovt-", dir="/tmp"))
    try:
        _overt("policy", "keygen", "--out", "it", cwd=directory)
        _overt(
            "policy",
            "stamp",
            REPO_ROOT / "policies/examples/test-workapp.json",
            "--version",
            "1",
            "--valid-days",
            "7",
            "--out",
            "p.json",
            cwd=directory,
        )
        _overt("policy", "sign", "p.json", "--key", "it.key", "--out", "p.signed.json",
               cwd=directory)  # fmt: skip
        socket = directory / "agent.sock"
        tray = start_tray(
            desktop, socket, "--", "--policy", str(directory / "p.signed.json"),
            "--trust", str(directory / "it.pub"), "--tenant", "example-corp",
            "--device-group", "office", "--state", str(directory / "state"),
        )  # fmt: skip
        try:
            wait_for(lambda: "started the agent, pid" in tray.log, 10, what="the agent start")
            (agent,) = psutil.Process(tray.proc.pid).children()
            assert "agent" in agent.cmdline()
            assert str(socket) in agent.cmdline()
            # A first run has no answer on record: the notice opens by itself,
            # generated by the real agent from the signed policy.
            notice = window(desktop, "Overt — capture notice")
            tray.shot("real-agent-notice")
            client = ControlClient(socket, timeout=5)
            assert client.status().consent_needed is True
            desktop.xdotool("windowactivate", "--sync", notice)
            desktop.xdotool("key", "alt+a")
            wait_for(lambda: client.status().consent_needed is False, 15,
                     what="the real agent to record the consent")  # fmt: skip

            entries = tray.open_menu()
            pauses = [k for k in entries if k.startswith("pause:")]
            longest = max(pauses, key=lambda k: int(k.partition(":")[2]))
            tray.click(entries, longest)
            wait_for(lambda: client.status().reason == "paused", 10,
                     what="the real agent to pause")  # fmt: skip
            wait_for(lambda: is_amber(tray.icon_colour()), 10, what="an amber icon")
            tray.shot("real-agent-paused")

            tray.click(tray.open_menu(), "quit")
            tray.exited_cleanly(20)
            assert "stopping the agent this tray started" in tray.log
            assert not psutil.pid_exists(agent.pid)
            assert not socket.exists()
        finally:
            desktop.kill(tray.proc)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
