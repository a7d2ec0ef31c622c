"""The collector as a real process: ``python -m overt collector serve --port 0``.

Each test starts its own collector on a temporary data directory and an
OS-chosen port, and the fixture stops it in teardown (SIGTERM, then SIGKILL
if it does not stop). Covers what only a real server shows: the announce
line and ``collector.json``, clean stops on SIGTERM/SIGINT, a 413 sent
before the body is, a chunked body cut off at the limit, a stranger's
upload refused before its body is sent, and a SIGKILL in the middle of
uploads followed by a restart. The bounds (memory, connections, rates) are
in ``test_bounds.py``.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from collector.config import CollectorConfig, StorageConfig
from collector.service import CollectorService
from collector.store.sqlite import DB_FILE, SQLiteStorage
from overt.wire.sealed import MAX_SEALED_BYTES
from policies.keys import public_key_model, write_keypair
from tests.policies._build import policy_doc, sign

from ._build import Device

ROOT = Path(__file__).resolve().parents[2]
#: Only a guard against a hung test; nothing asserts how long anything takes.
DEADLINE = 60.0


@dataclass
class RunningCollector:
    proc: subprocess.Popen[str]
    data: Path
    url: str = ""
    host: str = ""
    port: int = 0
    stderr: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_collector(
    data: Path,
    *extra: str,
    expect_listening: bool = True,
    preexec_fn: Callable[[], None] | None = None,
) -> RunningCollector:
    """``overt collector serve`` on ``data``; ``preexec_fn`` runs in the child (to set limits)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "overt",
            "collector",
            "serve",
            "--data",
            str(data),
            "--port",
            "0",
            "--log-level",
            "warning",
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    running = RunningCollector(proc, data)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
    line = proc.stdout.readline() if ready else ""
    if not expect_listening:
        return running
    if "listening on" not in line:
        running.stop(signal.SIGKILL)
        err = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"the collector did not start: {line!r} {err}")
    running.url = line.split("listening on ", 1)[1].split()[0]
    running.host, port = running.url.removeprefix("http://").rsplit(":", 1)
    running.port = int(port)
    return running


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "collector"


@pytest.fixture
def running_collector(data_dir: Path) -> Iterator[RunningCollector]:
    running = start_collector(data_dir)
    yield running
    running.stop(signal.SIGKILL)


def _service(data: Path) -> CollectorService:
    """The data directory opened beside the server, as ``overt collector admin-token`` does."""
    storage = SQLiteStorage(StorageConfig(data_dir=data, exclusive=False))
    return CollectorService(storage, CollectorConfig(storage=storage.config))


def _enroll(url: str, data: Path, count: int) -> list[Device]:
    service = _service(data)
    try:
        tokens = [
            service.accounts.create_enrollment_token("example-corp", "office", 60, "cli:test").token
            for _ in range(count)
        ]
    finally:
        service.close()
    devices = []
    with httpx.Client(base_url=url, timeout=DEADLINE) as client:
        for n, token in enumerate(tokens):
            device = Device(f"dev-{n}")
            answer = client.post(
                "/v1/enroll",
                json={
                    "token": token,
                    "device_id": device.device_id,
                    "public_key": device.public_b64,
                },
            )
            assert answer.status_code == 201, answer.text
            devices.append(device)
    return devices


def _now_ms() -> int:
    """The real process runs on the system clock, so its requests are signed with it."""
    return int(time.time() * 1000)


def _upload(client: httpx.Client, device: Device, sealed: bytes) -> httpx.Response:
    headers = device.sign("POST", "/v1/batches", sealed, _now_ms())
    return client.post("/v1/batches", content=sealed, headers=headers)


# ----------------------------------------------------------------- start


def test_it_announces_where_it_listens_and_writes_collector_json(
    running_collector: RunningCollector, data_dir: Path
) -> None:
    state = json.loads((data_dir / "collector.json").read_text())
    assert state["url"] == running_collector.url
    assert state["port"] == running_collector.port != 0
    assert state["pid"] == running_collector.proc.pid
    answer = httpx.get(f"{running_collector.url}/openapi.json", timeout=DEADLINE)
    assert answer.status_code == 200
    assert "/v1/batches" in answer.json()["paths"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_it_cleanly(data_dir: Path, sig: int) -> None:
    running = start_collector(data_dir)
    assert running.stop(sig) == 0
    assert not (data_dir / "collector.json").exists()
    stderr = running.proc.stderr.read() if running.proc.stderr else ""
    assert "Traceback" not in stderr


def test_a_second_collector_on_the_same_data_is_refused(
    running_collector: RunningCollector, data_dir: Path
) -> None:
    second = start_collector(data_dir, expect_listening=False)
    assert second.proc.wait(timeout=DEADLINE) == 1
    assert second.proc.stderr is not None
    assert "another collector is serving" in second.proc.stderr.read()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "overt",
                "collector",
                "serve",
                "--data",
                str(tmp_path / "d"),
                "--port",
                str(port),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


# ------------------------------------------------------------ body limits


def _raw_request(host: str, port: int, head: bytes, chunks: Sequence[bytes] = ()) -> bytes:
    with socket.create_connection((host, port), timeout=DEADLINE) as conn:
        conn.sendall(head)
        for chunk in chunks:
            conn.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = conn.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_a_huge_declared_body_gets_413_without_being_sent(
    running_collector: RunningCollector,
) -> None:
    head = (
        b"POST /v1/batches HTTP/1.1\r\nHost: collector\r\n"
        b"Content-Type: application/vnd.overt.sealed-batch; version=1\r\n"
        b"Content-Length: 1000000000000\r\n\r\n"
    )
    # Not one byte of the body is sent: the answer can only come from the header.
    answer = _raw_request(running_collector.host, running_collector.port, head)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"too_large" in answer or b"content-length" in answer.lower()


def _signed_head(device: Device, extra: bytes) -> bytes:
    """A batch upload's head, signed over an empty body: enough to be admitted."""
    signed = device.sign("POST", "/v1/batches", b"", _now_ms())
    lines = b"".join(f"{name}: {value}\r\n".encode() for name, value in signed.items())
    return b"POST /v1/batches HTTP/1.1\r\nHost: collector\r\n" + lines + extra + b"\r\n"


def test_a_chunked_body_is_refused_once_past_the_limit_without_its_end(
    running_collector: RunningCollector, data_dir: Path
) -> None:
    [device] = _enroll(running_collector.url, data_dir, 1)
    head = _signed_head(device, b"Transfer-Encoding: chunked\r\n")
    size = 1024 * 1024
    chunk = b"%x\r\n" % size + b"x" * size + b"\r\n"
    count = MAX_SEALED_BYTES // size + 1
    # Past the limit, and the terminating zero-length chunk is never sent.
    answer = _raw_request(running_collector.host, running_collector.port, head, [chunk] * count)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_strangers_body_is_refused_before_a_byte_of_it_is_sent(
    running_collector: RunningCollector,
) -> None:
    stranger = Device("dev-never-enrolled")
    head = _signed_head(stranger, b"Content-Length: 8000000\r\n")
    # The answer comes from the head alone: not one byte of the body is sent.
    answer = _raw_request(running_collector.host, running_collector.port, head)
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b'"authentication failed"' in answer or b"content-length" in answer


# ------------------------------------------------------ policies, grants


def test_policies_and_the_grant_key_given_at_start_are_used(tmp_path: Path, data_dir: Path) -> None:
    key, _ = write_keypair(tmp_path / "admin")
    admin_key = {
        **public_key_model(key.public_key(), "collector").model_dump(),
        "categories": ["battery"],
    }
    signed = sign(policy_doc(1, grant_signers=[admin_key]), ["A"])
    policy_file = tmp_path / "policy.signed.json"
    policy_file.write_bytes(signed)
    running = start_collector(
        data_dir, "--policy", str(policy_file), "--grant-key", str(tmp_path / "admin.key")
    )
    try:
        [device] = _enroll(running.url, data_dir, 1)
        service = _service(data_dir)
        admin = {
            "Authorization": f"Bearer {service.accounts.create_admin_token('alice', 'cli:test')}"
        }
        service.close()
        with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
            policy = client.get(
                "/v1/policy", headers=device.sign("GET", "/v1/policy", b"", _now_ms())
            )
            assert policy.content == signed
            body = json.dumps({"category": "battery", "reason": "r", "duration_days": 2}).encode()
            asked = client.post(
                "/v1/exemptions",
                content=body,
                headers=device.sign("POST", "/v1/exemptions", body, _now_ms()),
            )
            request_id = asked.json()["request_id"]
            approved = client.post(f"/v1/admin/exemptions/{request_id}/approve", headers=admin)
            assert approved.status_code == 200, approved.text
    finally:
        assert running.stop() == 0


def test_a_bad_grant_key_stops_the_start(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "bad.key").write_text("not a key")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "overt",
            "collector",
            "serve",
            "--data",
            str(data_dir),
            "--port",
            "0",
            "--grant-key",
            str(tmp_path / "bad.key"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert proc.returncode == 1
    assert "not a PEM private key" in proc.stderr


# ------------------------------------------------------ killed mid-upload


def test_every_acknowledged_batch_survives_a_sigkill(data_dir: Path) -> None:
    running = start_collector(data_dir)
    devices = _enroll(running.url, data_dir, 4)
    acknowledged: dict[tuple[str, int], bytes] = {}
    sent: dict[tuple[str, int], bytes] = {}
    lock = threading.Lock()
    enough = threading.Event()

    def keep_uploading(device: Device) -> None:
        with httpx.Client(base_url=running.url, timeout=DEADLINE) as client:
            for seq in range(1, 10_000):
                sealed = device.sealed(seq, bytes([seq % 256]) * 20_000)
                with lock:
                    sent[(device.device_id, seq)] = sealed
                try:
                    answer = _upload(client, device, sealed)
                except httpx.HTTPError:
                    return  # the collector is gone
                if answer.status_code != 201:
                    return
                with lock:
                    acknowledged[(device.device_id, seq)] = sealed
                    if len(acknowledged) >= 60:
                        enough.set()

    threads = [threading.Thread(target=keep_uploading, args=(d,)) for d in devices]
    for thread in threads:
        thread.start()
    assert enough.wait(timeout=DEADLINE)
    running.proc.kill()  # SIGKILL while the uploads are still going
    running.proc.wait()
    for thread in threads:
        thread.join(timeout=DEADLINE)
    assert len(acknowledged) >= 60

    # The database is sound and the restart repairs whatever the kill left.
    db = sqlite3.connect(data_dir / DB_FILE)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    again = start_collector(data_dir)
    try:
        with httpx.Client(base_url=again.url, timeout=DEADLINE) as client:
            device = devices[0]
            first_unacked = next(
                seq for seq in range(1, 10_000) if (device.device_id, seq) not in acknowledged
            )
            resent = _upload(client, device, acknowledged[(device.device_id, 1)])
            assert resent.json()["status"] == "duplicate"
            retried = _upload(client, device, sent[(device.device_id, first_unacked)])
            assert retried.status_code in {200, 201}
    finally:
        assert again.stop() == 0

    storage = SQLiteStorage(StorageConfig(data_dir=data_dir))
    try:
        stored = {(b.device_id, b.seq): b.sealed for b in storage.iter_batches()}
        assert storage.integrity_check() == "ok"
    finally:
        storage.close()
    for key, sealed in acknowledged.items():
        assert stored.get(key) == sealed, f"acknowledged batch {key} is missing or altered"
    for key, sealed in stored.items():
        assert sealed == sent[key]  # nothing stored that was not sent
