"""The trust store: the one place in ``policies`` that reads and writes the disk.

A :class:`TrustStore` persists what :func:`policies.verify.verify_policy`
returns: the :class:`~policies.verify.TrustState` and the exact signed bytes of
the last good policy. On-disk layout, in one directory::

    state.json                  {"format": 1, "version": N, "payload_sha256": "<hex>",
                                 "expires": "<ISO 8601>", "signers": {SignerSet}}
    policy-<payload_sha256>.json  the signed policy file exactly as accepted

Writes are atomic (temp file in the same directory, fsync, ``os.replace``,
fsync of the directory). :meth:`TrustStore.save` writes the policy file first
and ``state.json`` second; replacing ``state.json`` is the commit point, and
policy files that ``state.json`` no longer names are removed afterwards.

Guarantees after a crash at any moment: ``state.json`` is either the old or
the new state, never a mix; the policy file it names is complete; a stray
temp file or superseded policy file may remain and is ignored (and cleaned up
by the next save). A state file that is unreadable, of an unknown format, or
inconsistent with its policy file raises :class:`CorruptStateError` rather
than being silently reset, since a reset would drop rollback protection.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pydantic

from overt.files import atomic_write
from policies.envelope import MAX_POLICY_BYTES, parse_envelope, read_limited
from policies.errors import CorruptStateError, PolicyError, StoreError, UnreadableFileError
from policies.model import Policy, SignerSet
from policies.verify import DeviceScope, TrustState, verify_policy

STATE_FORMAT = 1
STATE_FILE = "state.json"
_POLICY_PREFIX = "policy-"
_POLICY_SUFFIX = ".json"
_MAX_STATE_BYTES = 256 * 1024


class _StateFile(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    format: int
    version: int = pydantic.Field(ge=1)
    payload_sha256: str = pydantic.Field(pattern=r"^[0-9a-f]{64}$")
    expires: pydantic.AwareDatetime
    signers: SignerSet


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """What a trust store holds: the state and the signed bytes it was derived from."""

    state: TrustState
    signed_policy: bytes


def read_file_limited(path: str | os.PathLike[str], limit: int = MAX_POLICY_BYTES) -> bytes:
    """Read a file, but never more than ``limit + 1`` bytes of it.

    Raises :class:`~policies.errors.OversizedError` when the file is larger than
    ``limit`` and :class:`~policies.errors.UnreadableFileError` when it cannot be
    opened or read.
    """
    try:
        with open(path, "rb") as stream:
            return read_limited(stream, limit, os.fspath(path))
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {os.fspath(path)}: {exc.strerror}") from exc


def _policy_name(payload_sha256: str) -> str:
    return f"{_POLICY_PREFIX}{payload_sha256}{_POLICY_SUFFIX}"


class TrustStore:
    """A directory holding one device's trust state and last good policy."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    def _corrupt(self, reason: str) -> CorruptStateError:
        return CorruptStateError(
            f"trust state in {self.directory} is corrupt ({reason}); restore it from a backup, "
            "or remove the directory to start again from the pinned keys (this drops "
            "rollback protection)"
        )

    def load(self) -> StoredPolicy | None:
        """The persisted state and signed policy, or ``None`` if nothing was accepted yet."""
        try:
            with open(self.state_path, "rb") as stream:
                raw = read_limited(stream, _MAX_STATE_BYTES, STATE_FILE)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self.state_path}: {exc.strerror}") from exc
        except PolicyError as exc:
            raise self._corrupt(str(exc)) from exc

        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise self._corrupt(f"{STATE_FILE} is not JSON") from exc
        if not isinstance(document, dict) or "format" not in document:
            raise self._corrupt(f"{STATE_FILE} has no format version")
        if document["format"] != STATE_FORMAT:
            raise self._corrupt(
                f"{STATE_FILE} has format {document['format']!r}; this version reads "
                f"format {STATE_FORMAT}"
            )
        try:
            stored = _StateFile.model_validate(document)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise self._corrupt(f"{STATE_FILE} is invalid at {where}: {first['msg']}") from exc

        policy_path = self.directory / _policy_name(stored.payload_sha256)
        try:
            signed = read_file_limited(policy_path, MAX_POLICY_BYTES)
            payload = parse_envelope(signed, MAX_POLICY_BYTES).payload
        except PolicyError as exc:
            raise self._corrupt(f"the last good policy cannot be read: {exc}") from exc
        if hashlib.sha256(payload).hexdigest() != stored.payload_sha256:
            raise self._corrupt(f"{policy_path.name} does not match {STATE_FILE}")

        state = TrustState(
            signers=stored.signers,
            version=stored.version,
            payload_sha256=stored.payload_sha256,
            expires=stored.expires,
        )
        return StoredPolicy(state=state, signed_policy=signed)

    def save(self, state: TrustState, signed_policy: bytes) -> None:
        """Persist ``state`` and the signed policy it came from, atomically."""
        payload = parse_envelope(signed_policy, MAX_POLICY_BYTES).payload
        if hashlib.sha256(payload).hexdigest() != state.payload_sha256:
            raise ValueError("the signed policy does not match the state's payload hash")
        document = _StateFile(
            format=STATE_FORMAT,
            version=state.version,
            payload_sha256=state.payload_sha256,
            expires=state.expires,
            signers=state.signers,
        )
        policy_name = _policy_name(state.payload_sha256)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(self.directory / policy_name, signed_policy)
            atomic_write(self.state_path, document.model_dump_json(indent=2).encode() + b"\n")
            for stale in self.directory.glob(f"{_POLICY_PREFIX}*{_POLICY_SUFFIX}"):
                if stale.name != policy_name:
                    stale.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot write the trust state in {self.directory}: {exc}") from exc


def accept_policy_file(
    path: str | os.PathLike[str],
    store: TrustStore,
    trusted: SignerSet,
    device: DeviceScope,
    now: datetime,
) -> tuple[Policy, TrustState]:
    """Read, verify and (only if accepted and new) persist a signed policy file.

    A rejected file raises and leaves the store's files untouched; the same
    payload accepted again writes nothing.
    """
    return accept_policy_bytes(
        read_file_limited(path, MAX_POLICY_BYTES), store, trusted, device, now
    )


def accept_policy_bytes(
    data: bytes,
    store: TrustStore,
    trusted: SignerSet,
    device: DeviceScope,
    now: datetime,
) -> tuple[Policy, TrustState]:
    """Verify signed policy bytes (a file's, or the collector's) and persist them if new.

    Same guarantees as :func:`accept_policy_file`.
    """
    held = store.load()
    policy, state = verify_policy(data, trusted, held.state if held else None, device, now)
    if held is None or state != held.state:
        store.save(state, data)
    return policy, state
