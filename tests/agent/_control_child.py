"""An agent with a control socket under a low file limit, for the flood test.

``python -m tests.agent._control_child DIR SOCKET NOFILE``: lower
``RLIMIT_NOFILE`` to NOFILE, then run the real :class:`~agent.app.Agent` on
the fake desktop (a signed test policy, consent on record, batches into
memory every second while a pretend typist types lines) behind the real
:class:`~agent.control.ControlServer` and :class:`AgentControlTarget` at
SOCKET. Prints ``ready`` once it serves, and runs until stdin closes.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.app import Agent
from agent.config import AgentConfig
from agent.control import ControlServer
from agent.control_target import AgentControlTarget
from agent.events import AppIdentity, Rect, WindowInfo
from agent.local_state import LocalState
from agent.pipeline.consent import ConsentRecord
from agent.sinks.memory import MemorySink
from agent.sources._fake import FakeCanary, FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources.canary import CANARY_CLASS, Canary
from policies.keys import generate_private_key, public_key_model
from policies.model import SignerSet
from policies.verify import parse_policy_payload, sign_policy

ROOT = Path(__file__).resolve().parents[2]
WORKAPP = WindowInfo(
    window_id=1,
    app=AppIdentity(wm_instance="overt-workapp", wm_class="overt-workapp"),
    title="Work",
    rect=Rect(100, 100, 800, 600),
    pid=10,
)


def main(argv: list[str]) -> int:
    directory, socket_path, nofile = Path(argv[0]), Path(argv[1]), int(argv[2])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    key = generate_private_key()
    doc = json.loads((ROOT / "policies/examples/test-workapp.json").read_text(encoding="utf-8"))
    now = datetime.now(UTC)
    doc["issued_at"] = (now - timedelta(hours=1)).isoformat()
    doc["expires"] = (now + timedelta(days=1)).isoformat()
    payload = json.dumps(doc).encode()
    policy_file = directory / "p.signed.json"
    policy_file.write_bytes(sign_policy(payload, [key]))
    local = LocalState(directory / "state")
    local.save_consent(ConsentRecord.accept(parse_policy_payload(payload), time.time()))

    probe = FakeWindowProbe()
    probe.add(WORKAPP, focus=True)

    def canary() -> Canary:
        opened = FakeCanary(Rect(1500, 50, 160, 90))
        probe.add(
            WindowInfo(
                opened.window_id,
                AppIdentity(wm_instance=CANARY_CLASS, wm_class=CANARY_CLASS),
                "Overt filter self-test",
                Rect(1500, 50, 160, 90),
            )
        )
        return opened

    hooks = FakeInputHooks()
    config = AgentConfig(
        trusted=SignerSet(keys=(public_key_model(key.public_key()),), threshold=1),
        tenant="example-corp",
        device_group="office",
        state_dir=directory / "state",
        policy_file=policy_file,
        batch_max_age_seconds=1.0,
    )
    agent = Agent(
        config, probe=probe, hooks=hooks, grabber=FakeScreenGrabber(), sink=MemorySink(),
        canary=canary,
    )  # fmt: skip
    target = AgentControlTarget(
        agent, policy=lambda: agent.policy, consent=local.consent, clock=time.time
    )
    server = ControlServer(target, socket_path, line_timeout=5.0)
    stopping = threading.Event()

    def typist() -> None:
        # Enter ends each span, so batches keep closing (every second).
        while not stopping.wait(0.2):
            hooks.type("ab")
            hooks.tap(name="enter")

    agent.start()
    server.start()
    thread = threading.Thread(target=typist, name="typist", daemon=True)
    thread.start()
    print("ready", server.connection_limit, flush=True)
    sys.stdin.read()
    stopping.set()
    thread.join()
    server.stop()
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
