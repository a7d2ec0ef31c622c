"""Collector memory and connections under idle and slow-body connections from strangers.

Run:  .venv/bin/python bench/collector_conns.py [--root TREE] [--idle N] [--slow N]
                                                [--enrolled-slow N] [--runs R]

What runs (each run a fresh ``overt collector serve --data TMP --port 0`` from
``--root``, default this checkout, with its default bounds; loopback only):

1. one device enrolled through the API uploads 10 sealed 64 KiB batches
   (warm-up); the collector's RSS is read (psutil): *baseline*;
2. ``--idle`` connections are opened and held (half of them send half a
   request head, the others nothing); after 2 s: RSS, and how many of them
   the collector still holds (established server-side sockets);
3. ``--slow`` more connections each start ``POST /v1/batches`` with
   ``Content-Length`` 8 MiB and well-formed signature headers of a device
   that was never enrolled, then send the body at 64 KiB every 50 ms
   (8 s for the whole); the peak RSS over those 8 s;
4. with ``--enrolled-slow N``: N slow bodies of the same size from a second
   enrolled device (a greedy or compromised one): the peak RSS;
5. throughout, the first device keeps uploading (one batch every 0.2 s on a
   new connection each): how many got 201, and the failures by phase.
6. at 15 s after the idle connections opened: how many the collector holds.

Prints one line per run and the medians. ``--root`` lets the same script
measure an older checkout (a ``git worktree``) whose ``serve`` has the same
defaults. Results go in BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench._machine import machine
from overt.wire.batch import SignalCounts
from overt.wire.sealed import MEDIA_TYPE, seal_batch
from overt.wire.signature import sign_request

PYTHON = sys.executable
BODY = 8 * 2**20
MIB = 2**20


def _header(device_id: str, seq: int, body_size: int) -> bytes:
    doc = {
        "format": 1,
        "device_id": device_id,
        "batch_id": f"{device_id}-b{seq:07d}",
        "seq": seq,
        "start_ms": 1_800_000_000_000 + seq * 60_000,
        "end_ms": 1_800_000_000_000 + seq * 60_000 + 59_000,
        "policy_version": 1,
        "dataset_key_id": "bench-dataset",
        "counts": asdict(SignalCounts(clicks=12)),
        "app_ids": ["editor"],
        "body_size": body_size,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Honest:
    device_id: str
    key: Ed25519PrivateKey
    url: str
    seq: int = 0
    ok: int = 0
    failed: int = 0
    phase: str = "warm-up"
    #: (phase, status or 0 for a connection error) of every failed upload.
    failures: list[tuple[str, int]] = field(default_factory=list)
    dataset: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate)

    def upload(self) -> None:
        self.seq += 1
        body = os.urandom(64 * 1024)
        sealed = seal_batch(
            _header(self.device_id, self.seq, len(body)), body, self.dataset.public_key(), self.key
        )
        now_ms = int(time.time() * 1000)
        headers = sign_request(self.key, self.device_id, "POST", "/v1/batches", sealed, now_ms)
        headers["Content-Type"] = MEDIA_TYPE
        try:
            answer = httpx.post(
                f"{self.url}/v1/batches", content=sealed, headers=headers, timeout=30
            )
            if answer.status_code == 201:
                self.ok += 1
                return
        except httpx.HTTPError:
            pass
        self.failed += 1


def _start(root: Path, data: Path) -> tuple[subprocess.Popen[str], str]:
    admin = subprocess.run(
        [PYTHON, "-m", "overt", "collector", "admin-token", "--data", str(data)],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    proc = subprocess.Popen(
        [PYTHON, "-m", "overt", "collector", "serve", "--data", str(data), "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the collector did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].split()[0] + "|" + admin


def _enroll(url: str, admin: str, device_id: str = "bench-honest") -> Honest:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    with httpx.Client(base_url=url, timeout=30) as client:
        token = client.post(
            "/v1/admin/enrollment-tokens",
            json={"tenant": "bench", "group": "office"},
            headers={"Authorization": f"Bearer {admin}"},
        ).json()["token"]
        client.post(
            "/v1/enroll",
            json={
                "token": token,
                "device_id": device_id,
                "public_key": base64.b64encode(raw).decode(),
            },
        ).raise_for_status()
    return Honest(device_id, key, url)


def _slow_body(
    host: str, port: int, key: Ed25519PrivateKey, device_id: str, stop: threading.Event
) -> None:
    """A batch upload whose 8 MiB body comes at 64 KiB every 50 ms."""
    now_ms = int(time.time() * 1000)
    signed = sign_request(key, device_id, "POST", "/v1/batches", b"", now_ms)
    lines = "".join(f"{k}: {v}\r\n" for k, v in signed.items())
    head = f"POST /v1/batches HTTP/1.1\r\nHost: c\r\nContent-Length: {BODY}\r\n{lines}\r\n"
    chunk = b"\x00" * (64 * 1024)
    try:
        with socket.create_connection((host, port), timeout=30) as conn:
            conn.sendall(head.encode())
            for _ in range(BODY // len(chunk)):
                if stop.wait(0.05):
                    return
                conn.sendall(chunk)
    except OSError:
        return  # refused or closed by the collector: that is its answer


def _established(proc: psutil.Process, port: int) -> int:
    return sum(
        1
        for c in proc.net_connections("tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
    )


@dataclass
class RunResult:
    baseline: float
    idle_rss: float
    idle_held: int
    slow_peak: float
    enrolled_peak: float
    held_at_15s: int
    honest_ok: int
    honest_failed: int
    failures: list[tuple[str, int]]


def run_once(root: Path, idle: int, slow: int, enrolled_slow: int) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="overt-bench-conns-") as tmp:
        proc, joined = _start(root, Path(tmp) / "collector")
        url, admin = joined.split("|")
        host, port_text = url.removeprefix("http://").rsplit(":", 1)
        port = int(port_text)
        server = psutil.Process(proc.pid)
        stop = threading.Event()
        sockets: list[socket.socket] = []
        try:
            honest = _enroll(url, admin)
            greedy = _enroll(url, admin, "bench-greedy")
            for _ in range(10):
                honest.upload()
            honest.ok = honest.failed = 0
            honest.failures.clear()
            baseline = server.memory_info().rss / MIB

            def keep_uploading() -> None:
                while not stop.wait(0.2):
                    honest.upload()

            uploader = threading.Thread(target=keep_uploading)
            uploader.start()
            opened = time.monotonic()
            honest.phase = "idle"
            for n in range(idle):
                conn = socket.create_connection((host, port), timeout=30)
                if n % 2:
                    conn.sendall(b"POST /v1/batches HTTP/1.1\r\nHost: c\r\n")
                sockets.append(conn)
            time.sleep(2)
            idle_rss = server.memory_info().rss / MIB
            idle_held = _established(server, port)

            def peak_during(threads: list[threading.Thread], seconds: float) -> float:
                for thread in threads:
                    thread.start()
                peak = server.memory_info().rss
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    peak = max(peak, server.memory_info().rss)
                    time.sleep(0.05)
                return peak / MIB

            stranger = Ed25519PrivateKey.generate()
            slow_threads = [
                threading.Thread(
                    target=_slow_body, args=(host, port, stranger, f"stranger-{n}", stop)
                )
                for n in range(slow)
            ]
            honest.phase = "strangers' slow bodies"
            slow_peak = peak_during(slow_threads, 8.5)
            enrolled_peak = 0.0
            enrolled_threads = [
                threading.Thread(
                    target=_slow_body, args=(host, port, greedy.key, greedy.device_id, stop)
                )
                for _ in range(enrolled_slow)
            ]
            if enrolled_threads:
                enrolled_peak = peak_during(enrolled_threads, 8.5)
            left = 15 - (time.monotonic() - opened)
            if left > 0:
                time.sleep(left)
            held_at_15s = _established(server, port)
            stop.set()
            uploader.join()
            for thread in slow_threads + enrolled_threads:
                thread.join()
        finally:
            stop.set()
            for conn in sockets:
                conn.close()
            proc.terminate()
            proc.wait(timeout=30)
    return RunResult(
        baseline,
        idle_rss,
        idle_held,
        slow_peak,
        enrolled_peak,
        held_at_15s,
        honest.ok,
        honest.failed,
        list(honest.failures),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=100)
    parser.add_argument("--enrolled-slow", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + args.slow + args.enrolled_slow + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=args.root, capture_output=True, text=True
    ).stdout.strip()
    print(f"machine: {machine()}")
    print(
        f"code: {args.root} at {commit}; {args.idle} idle, {args.slow} strangers' slow 8 MiB "
        f"bodies, {args.enrolled_slow} enrolled slow bodies"
    )
    results = []
    for n in range(args.runs):
        r = run_once(args.root, args.idle, args.slow, args.enrolled_slow)
        results.append(r)
        print(
            f"run {n + 1}: RSS baseline {r.baseline:.0f} MiB, {args.idle} idle "
            f"{r.idle_rss:.0f} MiB (held {r.idle_held}), +{args.slow} slow bodies peak "
            f"{r.slow_peak:.0f} MiB, enrolled slow peak {r.enrolled_peak:.0f} MiB; "
            f"held at 15 s {r.held_at_15s}; honest uploads {r.honest_ok} ok, "
            f"{r.honest_failed} failed"
        )
        if r.failures:
            by_phase: dict[str, dict[int, int]] = {}
            for phase, status in r.failures:
                counts = by_phase.setdefault(phase, {})
                counts[status] = counts.get(status, 0) + 1
            print(f"  failed uploads by phase (0: connection error): {by_phase}")

    def med(name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in results))

    print(
        f"median: baseline {med('baseline'):.0f} MiB, idle {med('idle_rss'):.0f} MiB "
        f"(held {med('idle_held'):.0f}), slow-body peak {med('slow_peak'):.0f} MiB, "
        f"enrolled slow peak {med('enrolled_peak'):.0f} MiB, held at 15 s "
        f"{med('held_at_15s'):.0f}, honest ok {med('honest_ok'):.0f} "
        f"failed {med('honest_failed'):.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
