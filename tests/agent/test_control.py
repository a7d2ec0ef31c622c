"""The control API over a real Unix socket in a temporary directory.

A fake target records what reached it, so every test can also say what did
*not* reach the agent (a refused request never calls the target). It
answers each call with a result model that carries the call itself
(:func:`answer_for`), so a test can tell that the answer it got is the
answer to its own request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.control import (
    AgentAlreadyRunning,
    AgentNotRunning,
    ControlClient,
    ControlError,
    ControlProtocolError,
    ControlServer,
    ControlSetupError,
    default_socket_path,
)
from agent.notice import consent_notice
from overt.wire.control import MAX_REQUEST_BYTES
from overt.wire.control_results import (
    ConsentOffer,
    DiscardReport,
    ExemptionRequestSent,
    LedgerDay,
    LedgerReport,
    RequestedExemptions,
    Result,
    Status,
)
from policies.verify import parse_policy_payload

ROOT = Path(__file__).resolve().parents[2]
NOTICE = consent_notice(parse_policy_payload((ROOT / "policies/examples/office.json").read_bytes()))

STATUS: dict[str, Any] = {
    "capturing": True,
    "reason": "capturing",
    "reason_text": "Capturing in allow-listed apps",
    "problem": None,
    "current_app": None,
    "paused_until_ms": None,
    "pause_max_minutes": 30,
    "policy": None,
    "consent_needed": False,
    "exemptions": [],
    "spool": None,
    "upload": None,
    "counts": {"batches_written": 0, "batches_held": 0, "events_seen": 0, "events_lost": 0},
    "now_ms": 1_795_000_000_000,
}


def answer_for(name: str, *args: Any) -> Result:
    """The result a FakeTarget gives for one call: the call is in its words."""
    said = f"{name} {list(args)}"
    if name == "discard":
        return DiscardReport(
            batches_deleted=args[0], events_dropped=0, erasure_requested=False, erasure_range=None
        )
    if name == "consent_show":
        return ConsentOffer.model_validate(
            {"policy_version": 3, "needed": True, "widening": [said], "previous": None,
             "notice": NOTICE}
        )  # fmt: skip
    if name == "exemption_request":
        return ExemptionRequestSent(request_id=said, status="pending")
    if name == "exemption_list":
        return RequestedExemptions(requests=())
    if name == "ledger":
        day = LedgerDay(day="2026-11-22", bytes_uploaded=args[0], budget=1)
        return LedgerReport(batches=(), daily=(day,))
    return Status.model_validate({**STATUS, "reason_text": said})


class FakeTarget:
    """Answers every command with :func:`answer_for` its call; can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: BaseException | None = None
        self.answer: Any = None
        #: When set, ``pause`` waits for it (a slow agent).
        self.hold: threading.Event | None = None
        self.holding = threading.Event()

    def _done(self, name: str, *args: Any) -> Any:
        self.calls.append((name, args))
        if self.fail is not None:
            raise self.fail
        if self.answer is not None:
            return self.answer
        return answer_for(name, *args)

    def status(self) -> Any:
        return self._done("status")

    def pause(self, minutes: int | None) -> Any:
        if self.hold is not None:
            self.holding.set()
            self.hold.wait(10)
        return self._done("pause", minutes)

    def resume(self) -> Any:
        return self._done("resume")

    def discard(self, minutes: int) -> Any:
        return self._done("discard", minutes)

    def consent_show(self) -> Any:
        return self._done("consent_show")

    def consent_accept(self, policy_version: int) -> Any:
        return self._done("consent_accept", policy_version)

    def consent_decline(self, policy_version: int) -> Any:
        return self._done("consent_decline", policy_version)

    def exemption_request(self, category: str, reason: str, duration_days: int) -> Any:
        return self._done("exemption_request", category, reason, duration_days)

    def exemption_list(self) -> Any:
        return self._done("exemption_list")

    def ledger(self, days: int) -> Any:
        return self._done("ledger", days)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "overt" / "agent.sock"


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget()


@pytest.fixture
def server(target: FakeTarget, sock_path: Path) -> Iterator[ControlServer]:
    running = ControlServer(target, sock_path, line_timeout=5.0)
    running.start()
    yield running
    if target.hold is not None:
        target.hold.set()
    running.stop()


@pytest.fixture
def client(server: ControlServer) -> ControlClient:
    return ControlClient(server.path, timeout=5.0)


class Raw:
    """A hand-driven connection, for what the client would never send."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5.0)
        self.sock.connect(os.fspath(path))
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed before an answer")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, data: bytes) -> dict[str, Any]:
        self.send(data + b"\n")
        return self.line()

    def assert_closed_by_peer(self) -> None:
        """Read until the server closes the connection; fail if it does not."""
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            return
        except TimeoutError:
            raise AssertionError("the server kept the connection open") from None

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(server: ControlServer) -> Iterator[Raw]:
    connection = Raw(server.path)
    yield connection
    connection.close()


# ------------------------------------------------------------------ commands

COMMANDS = [
    ("status", lambda c: c.status(), "status", ()),
    ("pause default", lambda c: c.pause(), "pause", (None,)),
    ("pause 5", lambda c: c.pause(5), "pause", (5,)),
    ("resume", lambda c: c.resume(), "resume", ()),
    ("discard", lambda c: c.discard(10), "discard", (10,)),
    ("consent.show", lambda c: c.consent_show(), "consent_show", ()),
    ("consent.accept", lambda c: c.consent_accept(3), "consent_accept", (3,)),
    ("consent.decline", lambda c: c.consent_decline(3), "consent_decline", (3,)),
    (
        "exemption.request",
        lambda c: c.exemption_request("bandwidth", "metered home internet", 30),
        "exemption_request",
        ("bandwidth", "metered home internet", 30),
    ),
    ("exemption.list", lambda c: c.exemption_list(), "exemption_list", ()),
    ("ledger default", lambda c: c.ledger(), "ledger", (7,)),
    ("ledger 3", lambda c: c.ledger(3), "ledger", (3,)),
]


@pytest.mark.parametrize(
    ("call", "method", "args"), [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS]
)
def test_every_command_reaches_the_target_and_returns_its_result(
    client: ControlClient, target: FakeTarget, call: Any, method: str, args: tuple[Any, ...]
) -> None:
    result = call(client)
    assert target.calls == [(method, args)]
    assert result == answer_for(method, *args)


def test_several_requests_share_one_connection(raw: Raw, target: FakeTarget) -> None:
    raw.send(b'{"v":1,"cmd":"status"}\n{"v":1,"cmd":"ledger","args":{"days":2}}\n')
    assert raw.line() == {"ok": True, "result": answer_for("status").model_dump(mode="json")}
    assert raw.line() == {"ok": True, "result": answer_for("ledger", 2).model_dump(mode="json")}
    assert raw.ask(b'{"v":1,"cmd":"resume","args":null}')["ok"] is True
    assert [name for name, _ in target.calls] == ["status", "ledger", "resume"]


def test_a_refusal_reaches_the_client_with_its_code_and_words(
    client: ControlClient, target: FakeTarget
) -> None:
    target.fail = ControlError("not_allowed", "The notice you answered is for version 2.")
    with pytest.raises(ControlError) as caught:
        client.consent_accept(2)
    assert caught.value.code == "not_allowed"
    assert caught.value.message == "The notice you answered is for version 2."
    assert type(caught.value) is ControlError


# ------------------------------------------------------------------ files and modes


def test_the_socket_is_0600_in_a_0700_directory(server: ControlServer) -> None:
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.lstat(server.path).st_mode)
    assert stat.S_IMODE(os.stat(server.path.parent).st_mode) == 0o700


def test_an_existing_directory_open_to_others_is_narrowed_to_0700(
    target: FakeTarget, sock_path: Path
) -> None:
    sock_path.parent.mkdir(parents=True)
    os.chmod(sock_path.parent, 0o755)
    with ControlServer(target, sock_path):
        assert stat.S_IMODE(os.stat(sock_path.parent).st_mode) == 0o700


def test_a_directory_of_another_user_is_refused(
    target: FakeTarget, sock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sock_path.parent.mkdir(parents=True, mode=0o700)
    me = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: me + 1)
    server = ControlServer(target, sock_path)
    with pytest.raises(ControlSetupError, match="another user"):
        server.start()
    assert not sock_path.exists()


def test_stop_removes_the_socket_and_clients_then_find_no_agent(
    target: FakeTarget, sock_path: Path
) -> None:
    server = ControlServer(target, sock_path)
    server.start()
    assert sock_path.exists()
    server.stop()
    assert not sock_path.exists()
    with pytest.raises(AgentNotRunning) as caught:
        ControlClient(sock_path).status()
    assert caught.value.why == "no socket"
    # The same path can be served again.
    with ControlServer(target, sock_path):
        assert ControlClient(sock_path).status() == answer_for("status")


def test_stop_closes_idle_connections(server: ControlServer, raw: Raw) -> None:
    assert raw.ask(b'{"v":1,"cmd":"status"}')["ok"] is True
    server.stop()
    raw.assert_closed_by_peer()
    assert not server.path.exists()


def test_a_stale_socket_is_replaced(target: FakeTarget, sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True, mode=0o700)
    crashed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    crashed.bind(os.fspath(sock_path))
    crashed.close()  # a crashed agent leaves its socket file behind
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    with pytest.raises(AgentNotRunning) as caught:
        ControlClient(sock_path).status()
    assert caught.value.why == "nothing listening"

    with ControlServer(target, sock_path):
        assert ControlClient(sock_path).status() == answer_for("status")


def test_a_second_server_on_the_same_path_is_refused_and_the_first_keeps_serving(
    server: ControlServer, target: FakeTarget
) -> None:
    second = ControlServer(FakeTarget(), server.path)
    with pytest.raises(AgentAlreadyRunning):
        second.start()
    second.stop()  # a no-op: it never started
    assert server.path.exists()
    assert ControlClient(server.path).status() == answer_for("status")
    assert target.calls == [("status", ())]


def test_a_live_listener_without_the_lock_is_left_alone(
    target: FakeTarget, sock_path: Path
) -> None:
    sock_path.parent.mkdir(parents=True, mode=0o700)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(os.fspath(sock_path))
    other.listen(1)
    try:
        with pytest.raises(AgentAlreadyRunning):
            ControlServer(target, sock_path).start()
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    finally:
        other.close()


def test_a_file_that_is_not_a_socket_is_not_removed(target: FakeTarget, sock_path: Path) -> None:
    sock_path.parent.mkdir(parents=True, mode=0o700)
    sock_path.write_text("someone's notes")
    with pytest.raises(ControlSetupError, match="not a socket"):
        ControlServer(target, sock_path).start()
    assert sock_path.read_text() == "someone's notes"


def test_a_socket_path_too_long_for_unix_sockets_is_refused(
    target: FakeTarget, tmp_path: Path
) -> None:
    path = tmp_path / ("d" * 120) / "agent.sock"
    with pytest.raises(ControlSetupError, match="too long"):
        ControlServer(target, path).start()


def test_default_socket_path_prefers_the_runtime_directory() -> None:
    assert default_socket_path({"XDG_RUNTIME_DIR": "/run/user/1000"}) == Path(
        "/run/user/1000/overt/agent.sock"
    )
    fallback = Path(f"/tmp/overt-{os.getuid()}/agent.sock")
    assert default_socket_path({"XDG_RUNTIME_DIR": "relative/dir"}) == fallback
    assert default_socket_path({}) == fallback


# ------------------------------------------------------------------ bad requests

BAD_REQUESTS = [
    ("not json", b"hello agent"),
    ("not utf-8", b'{"v":1,"cmd":"status\xff"}'),
    ("a list", b"[1, 2]"),
    ("a number", b"42"),
    ("no version", b'{"cmd":"status"}'),
    ("version 2", b'{"v":2,"cmd":"status"}'),
    ("version true", b'{"v":true,"cmd":"status"}'),
    ("version 1.0", b'{"v":1.0,"cmd":"status"}'),
    ("version as text", b'{"v":"1","cmd":"status"}'),
    ("no cmd", b'{"v":1}'),
    ("cmd not text", b'{"v":1,"cmd":5}'),
    ("args a list", b'{"v":1,"cmd":"pause","args":[5]}'),
    ("unknown field", b'{"v":1,"cmd":"status","id":7}'),
    ("unknown argument", b'{"v":1,"cmd":"status","args":{"verbose":true}}'),
    ("pause minutes as text", b'{"v":1,"cmd":"pause","args":{"minutes":"5"}}'),
    ("pause minutes zero", b'{"v":1,"cmd":"pause","args":{"minutes":0}}'),
    ("pause minutes negative", b'{"v":1,"cmd":"pause","args":{"minutes":-3}}'),
    ("pause minutes bool", b'{"v":1,"cmd":"pause","args":{"minutes":true}}'),
    ("pause minutes fraction", b'{"v":1,"cmd":"pause","args":{"minutes":1.5}}'),
    ("pause minutes NaN", b'{"v":1,"cmd":"pause","args":{"minutes":NaN}}'),
    ("pause minutes huge", b'{"v":1,"cmd":"pause","args":{"minutes":' + b"9" * 40 + b"}}"),
    ("pause minutes 1e400", b'{"v":1,"cmd":"pause","args":{"minutes":1e400}}'),
    ("discard without minutes", b'{"v":1,"cmd":"discard"}'),
    ("discard negative", b'{"v":1,"cmd":"discard","args":{"minutes":-10}}'),
    ("accept version 0", b'{"v":1,"cmd":"consent.accept","args":{"policy_version":0}}'),
    ("accept without version", b'{"v":1,"cmd":"consent.accept","args":{}}'),
    (
        "exemption unknown category",
        b'{"v":1,"cmd":"exemption.request","args":'
        b'{"category":"lazy","reason":"r","duration_days":3}}',
    ),
    (
        "exemption empty reason",
        b'{"v":1,"cmd":"exemption.request","args":'
        b'{"category":"battery","reason":"   ","duration_days":3}}',
    ),
    (
        "exemption reason too long",
        b'{"v":1,"cmd":"exemption.request","args":'
        b'{"category":"battery","reason":"' + b"x" * 2001 + b'","duration_days":3}}',
    ),
    (
        "exemption zero days",
        b'{"v":1,"cmd":"exemption.request","args":'
        b'{"category":"battery","reason":"r","duration_days":0}}',
    ),
    ("ledger too many days", b'{"v":1,"cmd":"ledger","args":{"days":1000}}'),
    ("nested too deeply", b"[" * 30_000 + b"]" * 30_000),
]


@pytest.mark.parametrize("line", [c[1] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_request_is_answered_bad_request_and_never_reaches_the_agent(
    raw: Raw, target: FakeTarget, line: bytes
) -> None:
    answer = raw.ask(line)
    assert answer["ok"] is False
    assert answer["error"] == "bad_request"
    assert answer["message"]
    assert target.calls == []
    # The same connection still serves the next request.
    assert raw.ask(b'{"v":1,"cmd":"status"}')["ok"] is True
    assert target.calls == [("status", ())]


def test_an_unknown_command_is_named_as_such(raw: Raw, target: FakeTarget) -> None:
    answer = raw.ask(b'{"v":1,"cmd":"format-disk"}')
    assert answer["error"] == "unknown_command"
    assert "format-disk" in answer["message"]
    assert target.calls == []


def test_an_over_long_pause_is_passed_on_for_the_agent_to_clamp(
    client: ControlClient, target: FakeTarget
) -> None:
    client.pause(600)
    assert target.calls == [("pause", (600,))]


def test_a_request_of_exactly_the_limit_is_served(raw: Raw, target: FakeTarget) -> None:
    head, tail = b'{"v":1,"cmd":"status"', b"}"
    line = head + b" " * (MAX_REQUEST_BYTES - len(head) - len(tail)) + tail
    assert len(line) == MAX_REQUEST_BYTES
    assert raw.ask(line)["ok"] is True
    assert target.calls == [("status", ())]


@pytest.mark.parametrize("newline", [True, False], ids=["with newline", "without newline"])
def test_an_oversized_line_is_refused_and_closed_while_others_are_served(
    server: ControlServer, raw: Raw, target: FakeTarget, newline: bool
) -> None:
    line = b'{"v":1,"cmd":"status","pad":"' + b"a" * MAX_REQUEST_BYTES + b'"}'
    with contextlib.suppress(BrokenPipeError):  # the server may stop reading early
        raw.send(line + b"\n" if newline else line)
    answer = raw.line()
    assert answer["error"] == "bad_request"
    assert "longer than" in answer["message"]
    raw.assert_closed_by_peer()
    assert ControlClient(server.path).status() == answer_for("status")
    assert target.calls == [("status", ())]


def test_a_client_cannot_send_an_oversized_request(client: ControlClient) -> None:
    with pytest.raises(ControlError) as caught:
        client.call("status", {"pad": "a" * MAX_REQUEST_BYTES})
    assert caught.value.code == "bad_request"


# ------------------------------------------------------------------ slow clients


def test_a_slow_client_does_not_block_another(
    server: ControlServer, raw: Raw, target: FakeTarget
) -> None:
    raw.send(b'{"v":1,"cmd":"sta')  # ...and nothing more for now
    assert ControlClient(server.path).status() == answer_for("status")
    raw.send(b'tus"}\n')
    assert raw.line()["ok"] is True
    assert target.calls == [("status", ()), ("status", ())]


def test_a_command_the_agent_is_slow_to_carry_out_does_not_block_another(
    server: ControlServer, target: FakeTarget
) -> None:
    target.hold = threading.Event()
    answers: list[Result] = []
    pausing = threading.Thread(target=lambda: answers.append(ControlClient(server.path).pause(5)))
    pausing.start()
    assert target.holding.wait(5)
    assert ControlClient(server.path).status() == answer_for("status")
    target.hold.set()
    pausing.join(5)
    assert answers == [answer_for("pause", 5)]


def test_a_client_that_never_finishes_its_line_is_disconnected(
    target: FakeTarget, sock_path: Path
) -> None:
    with ControlServer(target, sock_path, line_timeout=0.2):
        slow = Raw(sock_path)
        try:
            slow.send(b'{"v":1,')
            slow.assert_closed_by_peer()
        finally:
            slow.close()
        assert ControlClient(sock_path).status() == answer_for("status")
    assert target.calls == [("status", ())]


# ------------------------------------------------------------------ agent failures


def test_an_exception_in_the_agent_is_internal_and_leaks_nothing(
    client: ControlClient, target: FakeTarget, caplog: pytest.LogCaptureFixture
) -> None:
    target.fail = RuntimeError("typed secret: hunter2 4111 1111 1111 1111")
    with (
        caplog.at_level(logging.DEBUG, logger="agent.control"),
        pytest.raises(ControlError) as caught,
    ):
        client.discard(5)
    assert caught.value.code == "internal"
    assert "hunter2" not in caught.value.message
    assert "Traceback" not in caught.value.message
    assert "RuntimeError" in caplog.text
    assert "hunter2" not in caplog.text
    # The server goes on serving.
    target.fail = None
    assert client.status() == answer_for("status")


@pytest.mark.parametrize(
    "answer",
    [["not", "an", "object"], dict(STATUS), answer_for("discard", 5)],
    ids=["a list", "its object, not its model", "another command's result"],
)
def test_an_answer_that_is_not_the_commands_result_model_becomes_internal(
    client: ControlClient, target: FakeTarget, answer: Any
) -> None:
    target.answer = answer
    with pytest.raises(ControlError) as caught:
        client.status()
    assert caught.value.code == "internal"


def test_a_result_json_cannot_carry_becomes_internal(
    client: ControlClient, target: FakeTarget
) -> None:
    offer = answer_for("consent_show")
    assert isinstance(offer, ConsentOffer)
    app = offer.notice.apps[0]
    assert app.screenshots is not None
    shots = app.screenshots.model_copy(update={"min_interval_seconds": float("nan")})
    notice = offer.notice.model_copy(
        update={"apps": (app.model_copy(update={"screenshots": shots}), *offer.notice.apps[1:])}
    )
    target.answer = offer.model_copy(update={"notice": notice})
    with pytest.raises(ControlError) as caught:
        client.consent_show()
    assert caught.value.code == "internal"


def test_a_refusal_with_a_code_not_on_the_wire_becomes_internal(
    client: ControlClient, target: FakeTarget
) -> None:
    target.fail = ControlError("not_running", "confused")
    with pytest.raises(ControlError) as caught:
        client.status()
    assert caught.value.code == "internal"


# ------------------------------------------------------------------ the client side


class OneShotServer:
    """A listener that answers every connection with fixed bytes (or never)."""

    def __init__(self, path: Path, reply: bytes | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(os.fspath(path))
        self.sock.listen(4)
        self.reply = reply
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.connections.append(conn)
        if self.reply is not None:
            conn.recv(65536)
            conn.sendall(self.reply)
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()
        self.thread.join(5)


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (None, "timeout"),
        (b"", "protocol"),
        (b'{"ok": true, "result": {}', "protocol"),
        (b"not json\n", "protocol"),
        (b'{"ok": true}\n', "protocol"),
        (b'{"ok": "yes", "result": {}}\n', "protocol"),
        (b'{"ok": false, "error": 5}\n', "protocol"),
    ],
    ids=["silent", "hangs up", "half a line", "garbage", "no result", "ok not bool", "bad error"],
)
def test_a_misbehaving_agent_is_a_protocol_error(
    sock_path: Path, reply: bytes | None, code: str
) -> None:
    fake = OneShotServer(sock_path, reply)
    try:
        with pytest.raises(ControlProtocolError) as caught:
            ControlClient(sock_path, timeout=0.3).status()
        assert caught.value.code == code
    finally:
        fake.close()
