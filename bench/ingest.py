"""Collector ingest: sealed 64 KiB batches per second, acknowledged only once durable.

Run:  .venv/bin/python bench/ingest.py [--seconds S] [--warmup S] [--connections C]
                                       [--devices N] [--body-kib K]

Target: at least 1,200 batches/s with p99 at most 100 ms on the 2-core
benchmark machine.

What runs:

- a real ``overt collector serve --data TMP --port 0`` process (uvicorn,
  SQLite + blob segments, group commit), started and stopped by this script;
- ``--devices`` devices enrolled through the real API (enrollment tokens
  from the admin API, ``POST /v1/enroll``);
- a load generator in a separate process: ``--connections`` keep-alive
  HTTP/1.1 connections on loopback, each sending the next request as soon
  as the previous one is answered (closed loop). Every request is prepared
  before the clock starts: a distinct batch header (device, seq, batch id),
  the device's Ed25519 signature over header + ciphertext, and the request
  signature headers (``overt.wire.signature``) with a fresh nonce. The
  generator writes pre-built bytes and parses only the status line and
  Content-Length, so it stays cheap next to the collector.

The ciphertext is one real HPKE output (``overt.wire.sealed.seal_batch`` of a
random ``--body-kib`` body) shared by every request under distinct headers:
the collector never decrypts, so its work per batch (two SHA-256 of the
body, two Ed25519 verifications, parse, append, fsync, commit) is what it
would be for distinct bodies; only the generator's memory is spared.

Reports completed batches per second over the measured window (after
``--warmup``), latency percentiles from the first byte sent to the last
byte of the answer, every non-2xx answer, and the machine line. Results go
in BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bench._machine import machine
from overt.wire.batch import SignalCounts
from overt.wire.sealed import MAGIC, MEDIA_TYPE, SIGNATURE_CONTEXT, parse_sealed, seal_batch
from overt.wire.signature import sign_request

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass(frozen=True)
class Device:
    device_id: str
    key_pem: bytes


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
        "counts": asdict(SignalCounts(clicks=12, key_timings=80, screenshots=3)),
        "app_ids": ["editor"],
        "body_size": body_size,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def start_collector(data: Path, log_level: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "overt",
            "collector",
            "serve",
            "--data",
            str(data),
            "--port",
            "0",
            "--log-level",
            log_level,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"the collector did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].split()[0]


def enroll(url: str, admin_token: str, count: int) -> list[Device]:
    devices = []
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        for index in range(count):
            key = Ed25519PrivateKey.generate()
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            token = client.post(
                "/v1/admin/enrollment-tokens",
                json={"tenant": "bench", "group": "office"},
                headers=headers,
            ).json()["token"]
            device_id = f"bench-{index:04d}"
            answer = client.post(
                "/v1/enroll",
                json={
                    "token": token,
                    "device_id": device_id,
                    "public_key": base64.b64encode(raw).decode(),
                    "hostname": "bench",
                },
            )
            answer.raise_for_status()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            devices.append(Device(device_id, pem))
    return devices


# ------------------------------------------------------------- the generator


def prepare(
    devices: list[Device], total: int, body_kib: int, host: str
) -> tuple[list[bytes], bytes]:
    """Request heads (HTTP head + sealed prefix) and the shared ciphertext."""
    keys = [serialization.load_pem_private_key(d.key_pem, None) for d in devices]
    dataset = X25519PrivateKey.generate().public_key()
    body = os.urandom(body_kib * 1024)
    first = keys[0]
    assert isinstance(first, Ed25519PrivateKey)
    sample = parse_sealed(
        seal_batch(_header(devices[0].device_id, 1, len(body)), body, dataset, first)
    )
    ciphertext = sample.ciphertext
    heads = []
    seqs = [0] * len(devices)
    now_ms = int(time.time() * 1000)
    for index in range(total):
        slot = index % len(devices)
        seqs[slot] += 1
        device, key = devices[slot], keys[slot]
        assert isinstance(key, Ed25519PrivateKey)
        header = _header(device.device_id, seqs[slot], len(body))
        length = len(header).to_bytes(4, "big")
        # The device signature as seal_batch makes it (overt/wire/sealed.py format 1).
        signature = key.sign(SIGNATURE_CONTEXT + length + header + ciphertext)
        seal_prefix = MAGIC + length + header + signature
        sealed = seal_prefix + ciphertext
        auth = sign_request(key, device.device_id, "POST", "/v1/batches", sealed, now_ms)
        lines = [
            "POST /v1/batches HTTP/1.1",
            f"Host: {host}",
            f"Content-Type: {MEDIA_TYPE}",
            f"Content-Length: {len(sealed)}",
            *(f"{name}: {value}" for name, value in auth.items()),
        ]
        heads.append(("\r\n".join(lines) + "\r\n\r\n").encode() + seal_prefix)
    return heads, ciphertext


@dataclass(frozen=True)
class LoadResult:
    #: Seconds from the first byte sent to the answer's last byte, in the window.
    latencies: list[float]
    statuses: dict[int, int]
    window: float
    #: The generator's own CPU use, in cores.
    cpu: float


async def _drive(
    host: str,
    port: int,
    heads: list[bytes],
    ciphertext: bytes,
    connections: int,
    warmup: float,
    seconds: float,
) -> LoadResult:
    queue = iter(heads)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    cpu_start = time.process_time()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                head = next(queue, None)
                if head is None:
                    return
                sent = time.perf_counter()
                writer.write(head + ciphertext)
                status_line = await reader.readline()
                status = int(status_line.split(b" ", 2)[1])
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                finished = time.perf_counter()
                if finished >= measure_from and finished < stop_at:
                    latencies.append(finished - sent)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    window = min(time.perf_counter(), stop_at) - measure_from
    cpu = (time.process_time() - cpu_start) / elapsed
    return LoadResult(latencies, statuses, window, cpu)


@dataclass(frozen=True)
class LoadPlan:
    """What the generator process prepares and sends."""

    devices: list[Device]
    total: int
    body_kib: int
    host: str
    port: int
    connections: int
    warmup: float
    seconds: float


def _generator(conn: Connection, plan: LoadPlan) -> None:
    started = time.perf_counter()
    heads, ciphertext = prepare(plan.devices, plan.total, plan.body_kib, plan.host)
    conn.send(("prepared", time.perf_counter() - started))
    conn.recv()  # go
    result = asyncio.run(
        _drive(
            plan.host,
            plan.port,
            heads,
            ciphertext,
            plan.connections,
            plan.warmup,
            plan.seconds,
        )
    )
    conn.send(("done", result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--devices", type=int, default=64)
    parser.add_argument("--body-kib", type=int, default=64)
    parser.add_argument("--max-rate", type=int, default=3000, help="requests prepared per second")
    parser.add_argument(
        "--collector-log",
        default="warning",
        choices=["warning", "debug"],
        help="debug: the collector logs its writer's group sizes and times every 5 s",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="overt-bench-ingest-") as tmp:
        data = Path(tmp) / "collector"
        admin = subprocess.run(
            [PYTHON, "-m", "overt", "collector", "admin-token", "--data", str(data)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        proc, url = start_collector(data, args.collector_log)
        try:
            host, port = url.removeprefix("http://").rsplit(":", 1)
            devices = enroll(url, admin, args.devices)
            total = int(args.max_rate * (args.seconds + args.warmup))
            parent, child = multiprocessing.Pipe()
            generator = multiprocessing.get_context("fork").Process(
                target=_generator,
                args=(
                    child,
                    LoadPlan(
                        devices=devices,
                        total=total,
                        body_kib=args.body_kib,
                        host=host,
                        port=int(port),
                        connections=args.connections,
                        warmup=args.warmup,
                        seconds=args.seconds,
                    ),
                ),
            )
            generator.start()
            _, prepare_s = parent.recv()
            print(f"prepared {total} signed requests in {prepare_s:.1f} s", file=sys.stderr)
            server = psutil.Process(proc.pid)
            cpu_before, wall_before = server.cpu_times(), time.perf_counter()
            threads_before = {t.id: t.user_time + t.system_time for t in server.threads()}
            parent.send("go")
            _, result = parent.recv()
            assert isinstance(result, LoadResult)
            cpu_after, wall_after = server.cpu_times(), time.perf_counter()
            threads_after = {t.id: t.user_time + t.system_time for t in server.threads()}
            generator.join()
            wall = wall_after - wall_before
            server_cpu = (
                cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
            ) / wall
            main_cpu = (threads_after[proc.pid] - threads_before.get(proc.pid, 0.0)) / wall
            busiest = sorted(
                (
                    (spent - threads_before.get(tid, 0.0)) / wall
                    for tid, spent in threads_after.items()
                    if tid != proc.pid
                ),
                reverse=True,
            )[:3]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        stored = subprocess.run(
            [
                PYTHON,
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
                "print(c.execute('select count(*) from batches').fetchone()[0])",
                str(data / "collector.db"),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    latencies = sorted(result.latencies)
    window = result.window
    count = len(latencies)
    if not count:
        print("no request completed in the measured window")
        return 1

    def pct(p: float) -> float:
        return latencies[min(count - 1, int(p * count))] * 1000

    print(f"machine: {machine()}")
    print(
        f"workload: sealed batches of {args.body_kib} KiB (+ header and signature), "
        f"{args.devices} devices, {args.connections} connections, closed loop, "
        f"{args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up"
    )
    others = ", ".join(f"{c:.2f}" for c in busiest)
    print(
        f"CPU: collector {server_cpu:.2f} cores (event loop thread {main_cpu:.2f}, busiest other "
        f"threads {others}), load generator {result.cpu:.2f} cores"
    )
    print(f"answers in window: {dict(sorted(result.statuses.items()))}; stored in total: {stored}")
    print(
        f"ingest: {count / window:,.0f} batches/s   latency p50 {pct(0.50):.1f} ms   "
        f"p99 {pct(0.99):.1f} ms   max {latencies[-1] * 1000:.1f} ms   "
        f"mean {statistics.fmean(latencies) * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
