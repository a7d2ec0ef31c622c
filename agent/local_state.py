"""The agent's small durable files: device identity, consent, batch sequence.

This module owns the agent's state directory layout (format 1)::

    device.json     {"format": 1, "device_id": "<32 hex>"}
    consent.json    {"format": 1, "consent": ConsentRecord.to_dict()}
    sequence.json   {"format": 1, "next": N}   the next batch sequence number
    trust/          the policy trust store (see policies.store)

It does not own the policy trust state (``policies.store`` does) nor what any
of these values mean to the gate.

Every write is atomic (temp file, fsync, ``os.replace``), so after a crash
each file holds either its old or its new content. A sequence number is
recorded as used before the batch carrying it is written: a crash may skip a
number but never reuses one.
A file that cannot be parsed raises :class:`LocalStateError` naming the file;
it is never silently reset (a reset consent file would re-ask, a reset
sequence would reuse numbers).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from agent.pipeline.consent import ConsentRecord
from policies.store import TrustStore, atomic_write

FORMAT = 1
_MAX_FILE_BYTES = 1 << 20


class LocalStateError(Exception):
    """A state file is unreadable, malformed or of an unknown format."""


class LocalState:
    """The agent's state directory (created with mode 0700)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()

    @property
    def trust(self) -> TrustStore:
        return TrustStore(self.directory / "trust")

    def _read(self, name: str) -> dict[str, Any] | None:
        path = self.directory / name
        try:
            with path.open("rb") as handle:
                raw = handle.read(_MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LocalStateError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if len(raw) > _MAX_FILE_BYTES:
            raise LocalStateError(f"{path} is larger than {_MAX_FILE_BYTES} bytes")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LocalStateError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LocalStateError(f"{path} is not a format-{FORMAT} Overt state file")
        return data

    def _write(self, name: str, data: dict[str, Any]) -> None:
        body = json.dumps({"format": FORMAT, **data}, sort_keys=True).encode()
        atomic_write(self.directory / name, body, mode=0o600)

    def device_id(self) -> str:
        """This device's id, created on first use."""
        with self._lock:
            data = self._read("device.json")
            if data is not None:
                value = data.get("device_id")
                if not isinstance(value, str) or not value:
                    raise LocalStateError(f"{self.directory / 'device.json'} has no device_id")
                return value
            device_id = secrets.token_hex(16)
            self._write("device.json", {"device_id": device_id})
            return device_id

    def consent(self) -> ConsentRecord | None:
        data = self._read("consent.json")
        if data is None:
            return None
        record = data.get("consent")
        if not isinstance(record, dict):
            raise LocalStateError(f"{self.directory / 'consent.json'} holds no consent record")
        try:
            return ConsentRecord.from_dict(record)
        except ValueError as exc:
            raise LocalStateError(f"{self.directory / 'consent.json'}: {exc}") from exc

    def save_consent(self, record: ConsentRecord) -> None:
        self._write("consent.json", {"consent": record.to_dict()})

    def next_sequence(self) -> int:
        """The sequence number the next batch gets (1 for a new device)."""
        data = self._read("sequence.json")
        value = 1 if data is None else data.get("next")
        if not isinstance(value, int) or value < 1:
            raise LocalStateError(f"{self.directory / 'sequence.json'} has no valid 'next'")
        return value

    def advance_sequence(self, used: int) -> None:
        """Record that ``used`` is taken, before the batch carrying it is written."""
        with self._lock:
            if used >= self.next_sequence():
                self._write("sequence.json", {"next": used + 1})
