"""`make run`: the whole system on the embedded defaults, on this machine.

What it starts, in order (everything under ``.run/``, recreated each time):

1. demo keys: an IT policy signing key, an admin key that signs exemption
   grants, and the data team's dataset key (X25519);
2. the demo policy: ``policies/examples/test-workapp.json`` (the work app is
   allow-listed) with fresh dates, the demo keys, signed by the IT key;
3. a local collector on SQLite (``overt collector serve``) holding that
   policy, an admin user for the web pages, and an enrollment token;
4. the agent's enrollment (``overt agent enroll``);
5. a desktop: the user's own when ``DISPLAY`` works, else a private Xvfb with
   openbox and trayer;
6. the work app, and the tray (``overt tray``), which starts the agent.

On the user's desktop the tray then shows the capture notice and the demo
waits for them. On a private desktop a short scripted session answers the
notice (``overt consent --accept``), types and clicks in the work app,
pauses and resumes (which closes a batch), waits until the batch is
uploaded, and exports the dataset. Then it prints what was captured, where
the admin pages are, and how to export, and runs until Ctrl+C (or returns at
once with ``--exit-after-demo``, which the test suite uses). Everything it
started is stopped on the way out; ``.run/`` stays for inspection.

The private desktop comes from the test harness (``tests/desktop.py``), as
for the benchmarks: this is a repository tool, not part of the package.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from policies.keys import (  # noqa: E402
    load_private_key,
    load_public_key,
    public_key_model,
    write_dataset_keypair,
    write_keypair,
)
from policies.verify import sign_policy  # noqa: E402

OVERT = [sys.executable, "-m", "overt"]
TENANT, GROUP = "example-corp", "demo"
TYPED = "Quarterly numbers look good. Send the draft to Sam by Friday."


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


def _stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


class Demo:
    def __init__(self, workdir: Path, port: int) -> None:
        self.dir = workdir
        self.keys = workdir / "keys"
        self.logs = workdir / "logs"
        self.port = port
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.desktop: Any = None
        self.url = ""
        self.password = ""
        self.socket = self._socket_path()
        self.env = dict(os.environ)

    def _socket_path(self) -> Path:
        path = self.dir / "agent.sock"
        if len(str(path)) < 100:  # a Unix socket path has a small limit
            return path
        return Path(tempfile.mkdtemp(prefix="overt-demo-")) / "agent.sock"

    # ------------------------------------------------------------ processes

    def overt(self, *args: str | Path, stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [*OVERT, *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise DemoError(
                f"overt {args[0]} {args[1] if len(args) > 1 else ''} failed: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result.stdout

    def spawn(self, name: str, argv: Sequence[str | Path]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.procs.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    print(f"  {name} did not stop in time; killing it")
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()
        if self.desktop is not None:
            self.desktop.close()
            self.desktop = None

    # ------------------------------------------------------------ steps

    def make_keys_and_policy(self) -> Path:
        self.keys.mkdir(parents=True)
        write_keypair(self.keys / "it")
        write_keypair(self.keys / "admin")
        write_dataset_keypair(self.keys, "dataset")
        admin = public_key_model(load_public_key(self.keys / "admin.pub"), name="demo admin")
        doc = json.loads((REPO / "policies" / "examples" / "test-workapp.json").read_text())
        now = datetime.now(UTC).replace(microsecond=0)
        doc.update(
            version=1,
            issued_at=_stamp(now - timedelta(minutes=5)),
            expires=_stamp(now + timedelta(days=7)),
            scope={"tenant": TENANT, "device_groups": [GROUP]},
            grant_signers=[
                {**admin.model_dump(), "categories": ["bandwidth", "sensitive", "battery", "other"]}
            ],
        )
        doc["dataset_key"] = {
            "key_id": "demo-dataset",
            "public_key": (self.keys / "dataset.pub").read_text().strip(),
        }
        (self.dir / "policy.json").write_text(json.dumps(doc, indent=2) + "\n")
        signed = sign_policy(json.dumps(doc).encode(), [load_private_key(self.keys / "it.key")])
        path = self.dir / "policy.signed.json"
        path.write_bytes(signed)
        return path

    def start_collector(self, policy: Path) -> None:
        data = self.dir / "collector"
        self.spawn(
            "collector",
            [*OVERT, "collector", "serve", "--data", data, "--port", self.port,
             "--grant-key", self.keys / "admin.key", "--policy", policy,
             "--log-level", "warning"],
        )  # fmt: skip

        def listening() -> str | None:
            info = data / "collector.json"
            if not info.exists():
                return None
            with contextlib.suppress(ValueError, OSError):
                return str(json.loads(info.read_text())["url"])
            return None

        self.url = _wait(listening, 30, "the collector to listen").rstrip("/")
        self.password = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()
        self.overt("collector", "admin-user", "--data", data, "--name", "admin",
                   stdin=self.password + "\n")  # fmt: skip
        token = self.overt(
            "collector", "enroll-token", "--data", data, "--tenant", TENANT, "--group", GROUP
        ).split()[-1]
        self.overt("agent", "enroll", "--collector", self.url, "--token", token,
                   "--state", self.dir / "agent")  # fmt: skip

    def open_display(self, private: bool) -> bool:
        """Use the user's desktop if it answers; else start a private one. True if private."""
        display = self.env.get("DISPLAY")
        if display and not private and shutil.which("xdpyinfo"):
            ok = subprocess.run(["xdpyinfo", "-display", display], capture_output=True,
                                timeout=10, check=False).returncode == 0  # fmt: skip
            if ok:
                return False
        from tests.desktop import start_desktop, start_tray_host

        self.desktop = start_desktop()
        start_tray_host(self.desktop)
        self.env["DISPLAY"] = self.desktop.display
        return True

    def start_apps(self) -> Any:
        workapp = None
        if self.desktop is not None:
            workapp = self.desktop.launch_app(
                "tests.e2e.workapp", "overt-workapp", "--title", "Overt Work App",
                "--x", 100, "--y", 120, "--width", 800, "--height", 600,
            )  # fmt: skip
        else:
            env = {**self.env, "PYTHONPATH": str(REPO)}
            self.env, saved = env, self.env
            self.spawn("workapp", [sys.executable, "-m", "tests.e2e.workapp"])
            self.env = saved
        self.spawn(
            "tray",
            [*OVERT, "tray", "--socket", self.socket, "--",
             "--trust", self.keys / "it.pub", "--state", self.dir / "agent",
             "--batch-seconds", 10, "-v"],
        )  # fmt: skip
        _wait(self._agent_answers, 60, "the agent to answer on its control socket")
        return workapp

    def _agent_answers(self) -> bool:
        result = subprocess.run(
            [*OVERT, "status", "--json", "--socket", str(self.socket)],
            capture_output=True, text=True, env=self.env, timeout=30, check=False,
        )  # fmt: skip
        return result.returncode == 0

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.overt("status", "--json", "--socket", self.socket)))

    def scripted_session(self, workapp: Any) -> None:
        desk = self.desktop
        print("  answering the capture notice (overt consent --accept)")
        self.overt("consent", "--accept", "--socket", self.socket)
        try:
            _wait(lambda: self.status().get("capturing"), 30, "capture to start")
        except DemoError as exc:
            status = self.status()
            raise DemoError(
                f"{exc}: {status.get('reason_text')} ({status.get('problem')})"
            ) from exc
        print("  typing and clicking in the work app")
        desk.xdotool("windowactivate", "--sync", workapp.window_id)
        time.sleep(0.5)
        desk.xdotool("mousemove", 500, 370, "click", 1)
        desk.xdotool("type", "--delay", "40", TYPED)
        time.sleep(1.0)
        desk.xdotool("key", "ctrl+a")
        desk.xdotool("mousemove", 300, 420, "click", 1)
        time.sleep(1.0)

        def uploaded() -> bool:
            ledger = json.loads(self.overt("ledger", "--json", "--socket", self.socket))
            return any(b.get("state") == "uploaded" for b in ledger.get("batches", []))

        print("  waiting for the batch to be sealed, spooled and uploaded")
        _wait(uploaded, 90, "the first batch to reach the collector")
        print("  pausing from the CLI (the hooks come off), then resuming")
        self.overt("pause", "1", "--socket", self.socket)
        self.overt("resume", "--socket", self.socket)

    def export(self) -> str:
        out = self.dir / "dataset"
        return self.overt("export", "--data", self.dir / "collector",
                          "--key", self.keys / "dataset.key", "--out", out)  # fmt: skip

    def report(self, private: bool, exported: str | None) -> None:
        sock = f"--socket {self.socket}"
        ledger = self.overt("ledger", "--socket", self.socket, check=False)
        status = self.overt("status", "--socket", self.socket, check=False)
        where = "a private Xvfb desktop " + self.env["DISPLAY"] if private else "your desktop"
        print(f"""
Overt is running on {where}.

What the agent says now (overt status {sock}):
{_indent(status)}
What was captured (overt ledger {sock}):
{_indent(ledger)}
Collector:    {self.url}   (SQLite and blobs in {self.dir / "collector"})
Admin pages:  {self.url}/admin/   user: admin   password: {self.password}
Agent state:  {self.dir / "agent"}   logs: {self.logs}

Try:
  .venv/bin/overt status {sock}
  .venv/bin/overt pause 5 {sock}     (and: resume, discard 5, ledger, consent)
  .venv/bin/overt exemption request --category other --reason "demo" {sock}
      then approve it on the admin pages and watch `overt status` say exempt

Export the dataset (the data team's step, with the dataset private key):
  .venv/bin/overt export --data {self.dir / "collector"} --key {self.keys / "dataset.key"} \\
      --out {self.dir / "dataset"}""")
        if exported is not None:
            print(f"\nThe demo exported what it captured so far:\n{_indent(exported)}")


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.strip().splitlines())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=REPO / ".run")
    parser.add_argument("--port", type=int, default=8765, help="collector port (0: any)")
    parser.add_argument(
        "--private-display", action="store_true", help="use a private Xvfb even with DISPLAY set"
    )
    parser.add_argument(
        "--exit-after-demo", action="store_true", help="stop everything once the demo is shown"
    )
    args = parser.parse_args(argv)

    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True, mode=0o700)
    demo = Demo(args.workdir, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        print("Setting up the Overt demo in", args.workdir)
        print("  keys and the signed demo policy")
        policy = demo.make_keys_and_policy()
        print("  a local collector on SQLite, an admin user, the agent's enrollment")
        demo.start_collector(policy)
        private = demo.open_display(args.private_display)
        print("  the work app and the tray (which starts the agent)")
        workapp = demo.start_apps()
        exported = None
        if private:
            demo.scripted_session(workapp)
            exported = demo.export()
        else:
            print("  the tray shows the capture notice: answer it to start capture")
        demo.report(private, exported)
        if not args.exit_after_demo:
            print("\nPress Ctrl+C to stop everything this demo started.")
            while not stop.wait(1.0):
                if any(p.poll() is not None for name, p in demo.procs if name == "collector"):
                    print("the collector stopped; see", demo.logs / "collector.log")
                    break
        return 0
    except DemoError as exc:
        print(f"make run: {exc}\n(logs in {demo.logs})", file=sys.stderr)
        return 1
    finally:
        print("Stopping what the demo started...")
        demo.stop_all()
        print("Stopped. The demo's files stay in", args.workdir)


if __name__ == "__main__":
    sys.exit(main())
