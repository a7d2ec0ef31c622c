"""Delivery through a hostile network to a collector that dies: nothing lost,
nothing stored twice, backoff honoured.

A real collector process sits behind a loopback proxy that this test
scripts, request by request: 503 and 429 with ``Retry-After``, a 500, a
connection reset before the collector sees the request, a response lost
after the collector stored the batch (so the agent must resend and get a
``200 duplicate``), a slow answer; then the collector itself is killed with
SIGKILL mid-upload and restarted on the same port. The agent is the real
``AgentService`` (sealing, spool, uploader, policy sync) in this process with
the fake desktop, so the batches come as fast as the test types.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.events import AppIdentity, Rect, WindowInfo
from agent.local_state import LocalState
from agent.pipeline.consent import ConsentRecord
from agent.service import AgentService, ServiceSettings
from agent.sinks.upload import UploadSettings
from agent.sources._fake import FakeCanary, FakeInputHooks, FakeScreenGrabber, FakeWindowProbe
from agent.sources.canary import CANARY_CLASS, Canary
from agent.sources.power import FakeConditions
from policies.keys import load_public_key, public_key_model
from policies.model import SignerSet
from policies.verify import parse_policy_payload

from .stack import GROUP, TENANT, Stack, duplicates, ledger_seqs, make_stack

WORKAPP = WindowInfo(
    window_id=1,
    app=AppIdentity(wm_instance="overt-workapp", wm_class="overt-workapp"),
    title="Work",
    rect=Rect(100, 100, 800, 600),
    pid=10,
)


@dataclass
class Exchange:
    at: float
    method: str
    path: str
    action: str
    #: The collector's answer when the request reached it, else None.
    status: int | None = None


@dataclass
class FaultProxy:
    """An HTTP/1.1 proxy on loopback that answers each request as scripted.

    ``plan`` holds the actions for the next ``POST /v1/batches`` requests, in
    order; other requests (and batch requests once the plan is used up) pass.
    Actions: ``pass``, ``reset`` (close without answering, before the
    collector sees it), ``lose`` (forward, then drop the collector's answer),
    ``delay:S``, ``status:CODE`` and ``status:CODE:RETRY_AFTER``.
    """

    upstream_port: int
    plan: list[str] = field(default_factory=list)
    log: list[Exchange] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stopping = True
        self._server.close()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.closing(conn):
            conn.settimeout(30)
            try:
                head, body = _read_message(conn)
            except (OSError, ValueError):
                return
            request_line = head.split(b"\r\n", 1)[0].decode()
            method, path, _ = request_line.split(" ", 2)
            action = "pass"
            if method == "POST" and path == "/v1/batches":
                with self._lock:
                    if self.plan:
                        action = self.plan.pop(0)
            exchange = Exchange(time.monotonic(), method, path, action)
            self.log.append(exchange)
            if action == "reset":
                # SO_LINGER 0: close with a RST, as a middlebox resetting does.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if action.startswith("status:"):
                _, code, *retry = action.split(":")
                extra = f"Retry-After: {retry[0]}\r\n" if retry else ""
                payload = b'{"error":"injected"}'
                conn.sendall(
                    f"HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\n{extra}"
                    f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                    + payload
                )
                return
            if action.startswith("delay:"):
                time.sleep(float(action.split(":")[1]))
            try:
                answer = self._forward(head, body)
            except (OSError, ValueError):
                return  # the collector is down: the agent sees a dropped connection
            exchange.status = int(answer.split(b" ", 2)[1])
            if action == "lose":
                return
            conn.sendall(answer)

    def _forward(self, head: bytes, body: bytes) -> bytes:
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
        request = b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
        with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as up:
            up.sendall(request)
            rhead, rbody = _read_message(up)
        return rhead + b"\r\n\r\n" + rbody


def _read_message(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("connection closed before the end of the head")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("connection closed inside the body")
        rest += chunk
    return head, rest[:length]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = make_stack(tmp_path)
    stack.start_collector()
    yield stack
    stack.stop()


def _service(stack: Stack, state: Path, hooks: FakeInputHooks) -> AgentService:
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

    config = AgentConfig(
        trusted=SignerSet(
            keys=(public_key_model(load_public_key(stack.keys / "it.pub")),), threshold=1
        ),
        tenant=TENANT,
        device_group=GROUP,
        state_dir=state,
        batch_max_age_seconds=1.0,
    )
    settings = ServiceSettings(
        upload=UploadSettings(base_delay_s=0.2, max_delay_s=2.0, recheck_s=1.0),
        sync_interval_s=2.0,
    )
    return AgentService(
        config,
        probe=probe,
        hooks=hooks,
        grabber=FakeScreenGrabber(),
        conditions=FakeConditions(),
        socket_path=None,
        canary=canary,
        settings=settings,
    )


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_faults_and_a_collector_restart_lose_nothing_and_store_nothing_twice(
    stack: Stack, tmp_path: Path
) -> None:
    assert stack.collector is not None
    proxy = FaultProxy(stack.collector.port)
    state = tmp_path / "agent"
    stack.enroll(state, url=f"http://127.0.0.1:{proxy.port}")
    payload = (tmp_path / "policy-1.signed.json").read_bytes()
    policy = parse_policy_payload(base64.b64decode(json.loads(payload)["payload"]))
    LocalState(state).save_consent(ConsentRecord.accept(policy, time.time()))
    proxy.plan = ["status:503:1", "status:429:1", "status:500", "reset", "lose", "delay:1.5"]
    hooks = FakeInputHooks()
    service = _service(stack, state, hooks)
    service.start()
    try:
        _wait(lambda: service.agent.status().hooks_installed, 10, "capture to start")
        for n in range(8):
            hooks.type(f"batch {n} ")
            time.sleep(1.2)  # past the batch age, so each line closes a batch
            if n == 4:
                # Kill the collector while batches are on their way; restart it.
                port = stack.collector.port
                stack.collector.stop(signal.SIGKILL)
                time.sleep(1.5)
                stack.restart_collector(port)
        service.agent.flush()

        def all_uploaded() -> bool:
            return all(st == "uploaded" for _, st in ledger_seqs(state).values())

        _wait(all_uploaded, 60, "every spooled batch to be uploaded")
    finally:
        service.stop()
        proxy.close()

    ledger = ledger_seqs(state)
    stored = stack.stored()
    assert len(ledger) >= 8
    assert duplicates(stored) == []
    device_id = LocalState(state).device_id()
    assert {(seq, bid) for _, seq, bid in stored} == {
        (seq, bid) for seq, (bid, _) in ledger.items()
    }
    assert {d for d, _, _ in stored} == {device_id}
    # Every scripted fault was met, and the lost answer was followed by a resend.
    actions = [e.action for e in proxy.log if e.path == "/v1/batches"]
    assert actions[:6] == [
        "status:503:1",
        "status:429:1",
        "status:500",
        "reset",
        "lose",
        "delay:1.5",
    ]
    # The batch whose answer was lost had been stored; its resend was a duplicate.
    posts_all = [e for e in proxy.log if e.path == "/v1/batches"]
    lost = next(i for i, e in enumerate(posts_all) if e.action == "lose")
    assert posts_all[lost].status == 201
    assert 200 in [e.status for e in posts_all[lost + 1 :]]
    # Retry-After was honoured: the next attempt came no sooner than it said.
    posts = [e for e in proxy.log if e.path == "/v1/batches"]
    assert posts[1].at - posts[0].at >= 1.0
    assert posts[2].at - posts[1].at >= 1.0
