"""Seal + spool cost per batch on the agent, for realistic batch sizes.

Run:  .venv/bin/python bench/seal_spool.py [--batches N] [--sizes 16,64,256]
                                            [--dir DIR] [--seed S]

For each body size (KiB), N batches with incompressible bodies (a batch body
is zstd output plus WebP/JPEG blobs, so random bytes of the same size are a
fair stand-in) and a realistic header go through what ``SealingSink.write``
does: ``seal_batch`` (HPKE to an X25519 dataset key with the header as
``info``, Ed25519 device signature over header + ciphertext) and
``Spool.put`` (one SQLite transaction in WAL mode with ``synchronous=FULL``:
an fsync per batch) into a fresh spool under ``--dir`` (default: the system
temp directory; the file system type is printed, since fsync cost depends on
it). Reports, per size, the median and p99 microseconds per batch for the
seal, the put and both, batches per second (from the mean of both), and the
bytes sealing adds to a body (header JSON + frame + signature + HPKE's
encapsulated key and tag). Results go in BENCHMARKS.md by hand.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agent.sinks.spool import Spool
from bench._machine import machine
from overt.wire.batch import BatchHeader, SignalCounts
from overt.wire.sealed import seal_batch

T0_MS = 1_800_000_000_000


def file_system_of(path: Path) -> str:
    """The type of the mount holding ``path`` (from /proc/mounts), or "unknown"."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and resolved.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


def header(seq: int, body_size: int) -> bytes:
    return BatchHeader(
        device_id="3f0c9a1e6b2d4c8f9e7a5b3c1d2e4f60",
        batch_id=f"{seq:032x}",
        seq=seq,
        start_ms=T0_MS + seq * 60_000,
        end_ms=T0_MS + seq * 60_000 + 59_999,
        policy_version=3,
        dataset_key_id="dataset-2026-q3",
        counts=SignalCounts(
            clicks=42,
            scrolls=9,
            paths=61,
            path_samples=1830,
            text_spans=7,
            redactions=1,
            shortcuts=12,
            contexts=6,
            screenshots=5,
            markers=1,
        ),
        app_ids=("browser", "editor", "office"),
        body_size=body_size,
    ).to_json()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(size_kib: int, batches: int, directory: Path, rng: random.Random) -> dict[str, float]:
    dataset = X25519PrivateKey.generate().public_key()
    device = Ed25519PrivateKey.generate()
    bodies = [rng.randbytes(size_kib * 1024) for _ in range(batches)]
    seal_us: list[float] = []
    put_us: list[float] = []
    overhead = 0
    with tempfile.TemporaryDirectory(dir=directory) as state_dir:
        spool = Spool(state_dir, budget_bytes=2**40)
        try:
            for i, body in enumerate(bodies):
                seq = i + 1
                t0 = time.perf_counter_ns()
                sealed = seal_batch(header(seq, len(body)), body, dataset, device)
                t1 = time.perf_counter_ns()
                spool.put(sealed, now_ms=T0_MS, hold_until_ms=T0_MS)
                t2 = time.perf_counter_ns()
                seal_us.append((t1 - t0) / 1000)
                put_us.append((t2 - t1) / 1000)
                overhead = len(sealed) - len(body)
        finally:
            spool.close()
    both = [s + p for s, p in zip(seal_us, put_us, strict=True)]
    return {
        "seal_median": statistics.median(seal_us),
        "seal_p99": percentile(seal_us, 0.99),
        "put_median": statistics.median(put_us),
        "put_p99": percentile(put_us, 0.99),
        "median": statistics.median(both),
        "p99": percentile(both, 0.99),
        "per_s": 1e6 / statistics.mean(both),
        "overhead": overhead,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=300, help="batches per size")
    parser.add_argument("--sizes", default="16,64,256", help="body sizes in KiB")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(f"machine:   {machine()}")
    print(f"spool dir: {args.dir} ({file_system_of(args.dir)}), WAL, synchronous=FULL")
    print(f"batches:   {args.batches} per size, incompressible bodies")
    print(
        f"{'body':>8}  {'seal med/p99 µs':>17}  {'put med/p99 µs':>17}  "
        f"{'total med/p99 µs':>17}  {'batches/s':>9}  {'overhead B':>10}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        r = run(size, args.batches, args.dir, rng)
        print(
            f"{size:>5} KiB  {r['seal_median']:>8.0f}/{r['seal_p99']:<8.0f}  "
            f"{r['put_median']:>8.0f}/{r['put_p99']:<8.0f}  "
            f"{r['median']:>8.0f}/{r['p99']:<8.0f}  {r['per_s']:>9.0f}  {r['overhead']:>10}"
        )


if __name__ == "__main__":
    main()
