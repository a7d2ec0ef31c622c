"""The delivery stack for end-to-end tests: keys, a signed policy, a real
collector process, and agent state directories enrolled with it.

Every key is generated per test. The collector is ``python -m overt collector
serve`` on an OS-chosen port (see ``tests.collector.test_process``); the
agents are enrolled with the real ``overt agent enroll`` command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.config import StorageConfig
from collector.store.sqlite import SQLiteStorage
from policies.keys import (
    load_private_key,
    load_public_key,
    public_key_model,
    write_dataset_keypair,
    write_keypair,
)
from policies.verify import sign_policy
from tests.collector.test_process import RunningCollector, start_collector

ROOT = Path(__file__).resolve().parents[2]
OVERT = [sys.executable, "-m", "overt"]
TENANT, GROUP = "example-corp", "office"
CATEGORIES = ["bandwidth", "sensitive", "battery", "other"]


def stamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def overt(*args: str | Path, cwd: Path | None = None, stdin: str | None = None) -> str:
    """Run an ``overt`` command; fail the test with its output if it fails."""
    result = subprocess.run(
        [*OVERT, *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"overt {args[:2]} failed: {result.stderr}{result.stdout}"
    return result.stdout


@dataclass
class Stack:
    root: Path
    collector: RunningCollector | None = None
    policy_doc: dict[str, Any] = field(default_factory=dict)

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def data(self) -> Path:
        return self.root / "collector"

    @property
    def url(self) -> str:
        assert self.collector is not None
        return self.collector.url

    def make_policy(self, version: int = 1, **changes: Any) -> Path:
        """The test work-app policy, signed by this stack's IT key."""
        admin = public_key_model(load_public_key(self.keys / "admin.pub"), name="admin")
        doc = json.loads((ROOT / "policies/examples/test-workapp.json").read_text())
        now = datetime.now(UTC).replace(microsecond=0)
        doc.update(
            version=version,
            issued_at=stamp(now - timedelta(hours=1)),
            expires=stamp(now + timedelta(days=7)),
            scope={"tenant": TENANT, "device_groups": [GROUP]},
            grant_signers=[{**admin.model_dump(), "categories": CATEGORIES}],
            dataset_key={
                "key_id": "test-dataset",
                "public_key": (self.keys / "dataset.pub").read_text().strip(),
            },
        )
        doc.update(changes)
        self.policy_doc = doc
        path = self.root / f"policy-{version}.signed.json"
        path.write_bytes(
            sign_policy(json.dumps(doc).encode(), [load_private_key(self.keys / "it.key")])
        )
        return path

    def start_collector(self) -> RunningCollector:
        self.collector = start_collector(
            self.data,
            "--grant-key",
            str(self.keys / "admin.key"),
            "--policy",
            str(self.root / "policy-1.signed.json"),
        )
        return self.collector

    def restart_collector(self, port: int) -> RunningCollector:
        """Start the collector again on the same data directory and port."""
        assert self.collector is not None
        previous = self.collector
        self.collector = start_collector(self.data, "--port", str(port))
        # start_collector passes --port 0 first; the later --port wins.
        assert self.collector.port == port, (previous.url, self.collector.url)
        return self.collector

    def stop(self) -> None:
        if self.collector is not None:
            self.collector.stop(signal.SIGKILL)

    def enroll(self, state: Path, url: str | None = None) -> None:
        token = overt(
            "collector", "enroll-token", "--data", self.data, "--tenant", TENANT, "--group", GROUP
        ).split()[-1]
        overt("agent", "enroll", "--collector", url or self.url, "--token", token,
              "--state", state)  # fmt: skip

    def stored(self) -> list[tuple[str, int, str]]:
        """(device id, seq, batch id) of every batch the collector holds."""
        storage = SQLiteStorage(StorageConfig(data_dir=self.data, exclusive=False))
        try:
            return [(b.device_id, b.seq, b.batch_id) for b in storage.iter_batches()]
        finally:
            storage.close()


def make_stack(root: Path) -> Stack:
    stack = Stack(root)
    stack.keys.mkdir(parents=True)
    write_keypair(stack.keys / "it")
    write_keypair(stack.keys / "admin")
    write_dataset_keypair(stack.keys, "dataset")
    stack.make_policy()
    return stack


def ledger_seqs(state: Path) -> dict[int, tuple[str, str]]:
    """seq -> (batch id, state) of every batch the agent's ledger records."""
    import sqlite3

    db = state / "spool" / "v1" / "spool.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT seq, batch_id, state FROM ledger").fetchall()
    return {int(seq): (str(batch_id), str(st)) for seq, batch_id, st in rows}


def duplicates(items: list[tuple[str, int, str]]) -> list[tuple[str, int]]:
    counts = Counter((d, s) for d, s, _ in items)
    return [key for key, n in counts.items() if n > 1]


def agent_env() -> dict[str, str]:
    return {**os.environ, "OVERT_POWER_BACKEND": "system"}
