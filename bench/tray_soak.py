"""The real tray for an hour: does it survive, and do its counts of None, True and False hold?

Run:  .venv/bin/python bench/tray_soak.py [--minutes 60] [--poll 2] [--every 5]
                                          [--without-binding-check] [--out DIR]

Target: the tray is alive at the end, quits with status 0 having stopped the
agent it started, and its references to None, True and False do not fall.
On Python 3.11 a binding that drops them (``ui.qt_binding``) makes the tray
die of ``Fatal Python error: none_dealloc`` after 20 minutes or so at the
default 2 s poll, and leaves the agent capturing with no icon.

What runs, as on a person's desktop:

- a private Xvfb with openbox and trayer (``tests.desktop``);
- ``overt tray`` (xcb, DISPLAY set), through ``tests/ui/tray_refcounts.py``
  so that the process writes its own counts every ``--every`` seconds to
  ``refcounts.jsonl`` in ``--out`` (``artifacts/tray-soak``); the tray starts the real agent
  (``overt agent run`` on a test policy signed here, with its own state
  directory), which asks for consent: the notice opens by itself, and the
  consent is given through the control socket;
- every ten minutes the agent is paused for five minutes and left to resume
  by itself (so the tray announces "Capture resumes soon" and "Capture
  resumed"), then paused again and resumed after a minute;
- at the end the harness sends the tray SIGTERM, as a session manager does.

``--without-binding-check`` starts the tray even on a binding its start-up
check refuses, to measure that binding.

The report (stdout, and ``report.json`` in ``--out``): minutes run,
whether the tray survived (alive to the end, exit status 0), whether the
agent it started was stopped, and for each count the first and last value
and the least-squares slope per minute, with the tray's resident memory at
start and end. Exit status 0 when all of that holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tests.desktop as harness
from agent.control import ControlClient, ControlError
from bench._machine import machine
from tests.ui.tray_refcounts import COUNTED, read_samples, trend

OUT = harness.ARTIFACTS / "tray-soak"
#: A count may move by a few with the moment's locals; a faulty binding
#: loses hundreds a minute.
FALL_PER_MINUTE = 5.0
WARM_UP_S = 30.0
CYCLE_S = 600


def _overt(*args: str | Path, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "overt", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"overt {args[0]} {args[1]} failed:\n{result.stderr}")


def signed_policy(directory: Path) -> tuple[Path, Path]:
    """A test policy signed with a key made here: (policy, trust key)."""
    _overt("policy", "keygen", "--out", "it", cwd=directory)
    _overt("policy", "stamp", harness.REPO_ROOT / "policies/examples/test-workapp.json",
           "--version", "1", "--valid-days", "7", "--out", "p.json", cwd=directory)  # fmt: skip
    _overt("policy", "sign", "p.json", "--key", "it.key", "--out", "p.signed.json",
           cwd=directory)  # fmt: skip
    return directory / "p.signed.json", directory / "it.pub"


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def agent_pid(tray_pid: int) -> int | None:
    import psutil

    try:
        children = psutil.Process(tray_pid).children()
    except psutil.NoSuchProcess:
        return None
    agents = [c.pid for c in children if "agent" in c.cmdline()]
    return agents[0] if agents else None


class Schedule:
    """What to do to the agent at each moment of a ten-minute cycle."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client
        self.done: set[tuple[int, str]] = set()
        self.log: list[str] = []

    def tick(self, elapsed_s: float) -> None:
        cycle, at = divmod(int(elapsed_s), CYCLE_S)
        steps = ((60, "pause", 5), (420, "pause", 5), (480, "resume", None))
        for when, command, minutes in steps:
            if at >= when and (cycle, f"{when}{command}") not in self.done:
                self.done.add((cycle, f"{when}{command}"))
                try:
                    if command == "pause":
                        self.client.pause(minutes)
                    else:
                        self.client.resume()
                    self.log.append(f"{elapsed_s:.0f}s {command}")
                except ControlError as exc:
                    self.log.append(f"{elapsed_s:.0f}s {command} failed: {exc.code}")


def soak(args: argparse.Namespace) -> dict[str, Any]:
    args.out.mkdir(parents=True, exist_ok=True)
    samples_path = args.out / "refcounts.jsonl"
    directory = Path(tempfile.mkdtemp(prefix="ovt-soak-", dir="/tmp"))
    desktop = harness.start_desktop()
    report: dict[str, Any] = {"machine": machine(), "minutes": args.minutes, "poll_s": args.poll}
    agent: int | None = None
    try:
        harness.start_tray_host(desktop)
        policy, trust = signed_policy(directory)
        socket = directory / "agent.sock"
        env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "PYTHONPATH": str(harness.REPO_ROOT)}
        seconds = args.minutes * 60
        tray_args = ["--socket", str(socket), "--poll", str(args.poll), "-v", "--",
                     "--policy", str(policy), "--trust", str(trust), "--tenant", "example-corp",
                     "--device-group", "office", "--state", str(directory / "state")]  # fmt: skip
        check = ["--without-binding-check"] if args.without_binding_check else []
        tray = desktop.spawn(
            [sys.executable, "-m", "tests.ui.tray_refcounts", "--out", str(samples_path),
             "--seconds", str(seconds), "--every", str(args.every), *check, "--", *tray_args],
            env=env,
        )  # fmt: skip
        client = ControlClient(socket, timeout=5)

        def consent_asked() -> bool:
            if tray.poll() is not None:
                raise SystemExit(f"the tray exited with {tray.returncode}:\n{desktop.log_of(tray)}")
            try:
                return client.status().consent_needed
            except ControlError:
                return False

        harness.wait_for(consent_asked, 60, interval=0.2, what="the agent to ask for consent")
        client.consent_accept(client.consent_show().policy_version)
        agent = agent_pid(tray.pid)
        report["rss_kib_start"] = rss_kib(tray.pid)
        schedule = Schedule(client)
        started = time.monotonic()
        last_print = 0.0
        while tray.poll() is None and time.monotonic() - started < seconds + 60:
            elapsed = time.monotonic() - started
            schedule.tick(elapsed)
            if elapsed - last_print >= 60:
                last_print = elapsed
                rss = rss_kib(tray.pid)
                samples = read_samples(samples_path)
                latest = samples[-1] if samples else {}
                print(f"  {elapsed / 60:5.1f} min  tray rss {rss} KiB  "
                      + "  ".join(f"{n}={latest.get(n)}" for n in COUNTED), flush=True)  # fmt: skip
            if elapsed > seconds - 5 and "rss_kib_end" not in report:
                report["rss_kib_end"] = rss_kib(tray.pid)
            time.sleep(1)
        ran_s = time.monotonic() - started
        try:
            code = tray.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        samples = read_samples(samples_path)
        running = [s for s in samples if s["phase"] == "running"]
        report.update(
            ran_minutes=round(ran_s / 60, 1),
            exit_status=code,
            survived=code == 0 and ran_s >= seconds - 5,
            agent_stopped=agent is not None and not Path(f"/proc/{agent}").exists(),
            socket_removed=not socket.exists(),
            samples=len(samples),
            schedule=schedule.log,
            log_tail=desktop.log_of(tray).splitlines()[-8:],
        )
        if len(running) >= 2:
            after = min(WARM_UP_S, running[-1]["t"] / 2)
            for name in COUNTED:
                t = trend(samples, name, after_s=after)
                report[name] = {"first": t.first, "last": t.last,
                                "per_minute": round(t.per_minute, 1)}  # fmt: skip
        if samples and samples[-1]["phase"] == "stopped":
            report["after_quit"] = {n: samples[-1][n] for n in COUNTED}
        held = all(report.get(n, {}).get("per_minute", -1e9) > -FALL_PER_MINUTE for n in COUNTED)
        report["counts_held"] = held
        report["ok"] = bool(report["survived"] and report["agent_stopped"] and held)
        if tray.poll() is None:
            desktop.kill(tray)
    finally:
        if agent is not None and Path(f"/proc/{agent}").exists():
            # A tray that died leaves its agent capturing: stop it here.
            os.kill(agent, signal.SIGTERM)
        desktop.close()
        shutil.rmtree(directory, ignore_errors=True)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--poll", type=float, default=2.0, help="the tray's --poll, seconds")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--without-binding-check", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT, help=f"default {OUT}")
    args = parser.parse_args()
    import PySide6

    print(f"tray soak: {args.minutes:g} min, poll {args.poll:g} s, PySide6 {PySide6.__version__}")
    print(f"machine:  {machine()}", flush=True)
    report = soak(args)
    report["pyside6"] = PySide6.__version__
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(
        f"ran {report.get('ran_minutes')} min: survived {report.get('survived')} "
        f"(exit status {report.get('exit_status')}), "
        f"agent stopped {report.get('agent_stopped')}"
    )
    for name in COUNTED:
        c = report.get(name)
        if c:
            print(f"  {name:5s} {c['first']} -> {c['last']}  ({c['per_minute']:+.1f}/min)")
    print(f"  rss   {report.get('rss_kib_start')} -> {report.get('rss_kib_end')} KiB")
    print("OK" if report["ok"] else "FAILED", flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
