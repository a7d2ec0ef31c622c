"""The agent's small durable files: device identity, consent, batch sequence.

This module owns the agent's state directory layout (format 1)::

    device.json     {"format": 1, "device_id": "<32 hex>"}
    device.key      the device's Ed25519 private key, PKCS#8 PEM, mode 0600;
                    created on first use, never overwritten
    enrollment.json {"format": 1, "collector": URL, "device_id", "tenant",
                     "group", "enrolled_at"}   written by ``overt agent enroll``
    grants.json     {"format": 1, "grants": ["<base64 signed grant>", ...]}
                    as last fetched from the collector; agent.trust verifies
                    them when they arrive and when it reads them at start
    consent.json    {"format": 1, "consent": ConsentRecord.to_dict()}
    sequence.json   {"format": 1, "next": N}   the next batch sequence number
    trust/          the policy trust store (see policies.store)
    spool/v1/       sealed batches and the ledger (see agent.sinks.spool)

It does not own the policy trust state (``policies.store`` does) nor what any
of these values mean to the gate.

A process opens its state directory once and passes the one
:class:`LocalState` down (the CLI to the service, the service to capture and
the trust holder): its lock is what keeps the sequence number's
read-and-advance whole between threads.

Every write is atomic (temp file, fsync, ``os.replace``), so after a crash
each file holds either its old or its new content; a write that fails (a
full disk, a read-only file system) leaves the old content and raises
:class:`LocalStateError` naming the file, with the ``OSError`` as its cause
(``disk_full`` says whether the disk was out of space).

Sequence numbers: ``sequence.json`` holds the number after the highest one
handed to a batch. The agent records a number as used (``advance_sequence``)
before the batch carrying it is written to the spool, so a crash may skip a
number but never reuses one, and a number at or below ``next - 1`` that no
batch in the spool carries is a batch that was lost (a crash, or an exit
while its write still failed): ``agent.service`` tells the agent, whose
next batch carries a gap marker (``batches_lost``) just after the numbers
that were skipped.

A file that cannot be parsed raises :class:`LocalStateError` naming the file;
it is never silently reset (a reset consent file would re-ask, a reset
sequence would reuse numbers).
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.pipeline.consent import ConsentRecord
from overt.files import atomic_write
from policies.store import TrustStore

FORMAT = 1
_MAX_FILE_BYTES = 1 << 20
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class LocalStateError(Exception):
    """A state file is unreadable, unwritable, malformed or of an unknown format."""

    @property
    def disk_full(self) -> bool:
        """Whether the cause was a full disk (or a full quota)."""
        cause = self.__cause__
        return isinstance(cause, OSError) and cause.errno in _DISK_FULL


@dataclass(frozen=True, slots=True)
class Enrollment:
    """Where this device is enrolled, as the collector confirmed it."""

    collector: str
    device_id: str
    tenant: str
    group: str
    enrolled_at: float


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
        path = self.directory / name
        try:
            atomic_write(path, body, mode=0o600)
        except OSError as exc:
            raise LocalStateError(f"cannot write {path}: {exc.strerror or exc}") from exc

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

    def device_key(self) -> Ed25519PrivateKey:
        """The device's signing key, created (mode 0600, exclusively) on first use."""
        path = self.directory / "device.key"
        with self._lock:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                key = Ed25519PrivateKey.generate()
                pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(pem)
                        handle.flush()
                        os.fsync(handle.fileno())
                except OSError as exc:
                    raise LocalStateError(f"cannot create {path}: {exc.strerror or exc}") from exc
                return key
            except OSError as exc:
                raise LocalStateError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            loaded = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise LocalStateError(f"{path} is not a PEM private key") from exc
        if not isinstance(loaded, Ed25519PrivateKey):
            raise LocalStateError(f"{path} is not an Ed25519 key")
        return loaded

    def enrollment(self) -> Enrollment | None:
        data = self._read("enrollment.json")
        if data is None:
            return None
        try:
            return Enrollment(
                collector=str(data["collector"]),
                device_id=str(data["device_id"]),
                tenant=str(data["tenant"]),
                group=str(data["group"]),
                enrolled_at=float(data["enrolled_at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LocalStateError(f"{self.directory / 'enrollment.json'} is incomplete") from exc

    def save_enrollment(self, enrollment: Enrollment) -> None:
        self._write(
            "enrollment.json",
            {
                "collector": enrollment.collector,
                "device_id": enrollment.device_id,
                "tenant": enrollment.tenant,
                "group": enrollment.group,
                "enrolled_at": enrollment.enrolled_at,
            },
        )

    def grants(self) -> list[bytes]:
        """The signed grants last fetched from the collector (``agent.trust`` verifies them)."""
        data = self._read("grants.json")
        if data is None:
            return []
        items = data.get("grants")
        if not isinstance(items, list):
            raise LocalStateError(f"{self.directory / 'grants.json'} holds no grant list")
        try:
            return [base64.b64decode(item, validate=True) for item in items]
        except (binascii.Error, TypeError, ValueError) as exc:
            raise LocalStateError(f"{self.directory / 'grants.json'} is malformed") from exc

    def save_grants(self, grants: list[bytes]) -> None:
        self._write("grants.json", {"grants": [base64.b64encode(g).decode() for g in grants]})

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
        """Record that ``used`` is taken, before the batch carrying it is written.

        A number below the recorded next one changes nothing. Raises
        ``LocalStateError`` when the file cannot be read or written; the
        number is then not recorded, and the batch must not be written yet.
        """
        with self._lock:
            if used >= self.next_sequence():
                self._write("sequence.json", {"next": used + 1})
