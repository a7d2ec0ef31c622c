"""The trust store: atomic persistence, no-op re-acceptance, corrupt state."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from policies.envelope import MAX_POLICY_BYTES
from policies.errors import (
    CorruptStateError,
    OversizedError,
    StoreError,
    UnreadableFileError,
)
from policies.store import (
    STATE_FILE,
    STATE_FORMAT,
    TrustStore,
    accept_policy_file,
    read_file_limited,
)
from policies.verify import DeviceScope

from ._build import GROUP, NOW, TENANT, policy_doc, sign, signers, snapshot, to_bytes

DEVICE = DeviceScope(tenant=TENANT, group=GROUP)
PINNED = signers(["A"])


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _accepted(tmp_path: Path, version: int = 1) -> tuple[TrustStore, bytes]:
    store = TrustStore(tmp_path / "trust")
    data = sign(policy_doc(version), ["A"])
    accept_policy_file(_write(tmp_path, f"v{version}.json", data), store, PINNED, DEVICE, NOW)
    return store, data


def _payload_sha256(version: int) -> str:
    return hashlib.sha256(to_bytes(policy_doc(version))).hexdigest()


def test_empty_store_holds_nothing(tmp_path: Path) -> None:
    assert TrustStore(tmp_path / "missing").load() is None


def test_accepted_policy_is_persisted_with_a_format_version(tmp_path: Path) -> None:
    store, data = _accepted(tmp_path)
    digest = _payload_sha256(1)
    assert sorted(snapshot(store.directory)) == [f"policy-{digest}.json", STATE_FILE]
    state = json.loads((store.directory / STATE_FILE).read_text())
    assert state["format"] == STATE_FORMAT
    assert state["version"] == 1
    assert state["payload_sha256"] == digest
    held = store.load()
    assert held is not None
    assert held.signed_policy == data
    assert held.state.signers == PINNED


def test_update_replaces_state_and_removes_the_superseded_policy(tmp_path: Path) -> None:
    store, _ = _accepted(tmp_path, 1)
    v2 = sign(policy_doc(2), ["A"])
    accept_policy_file(_write(tmp_path, "v2.json", v2), store, PINNED, DEVICE, NOW)
    files = snapshot(store.directory)
    assert sorted(files) == [f"policy-{_payload_sha256(2)}.json", STATE_FILE]
    held = store.load()
    assert held is not None
    assert held.state.version == 2
    assert held.signed_policy == v2


def test_identical_file_accepted_twice_writes_nothing(tmp_path: Path) -> None:
    store, data = _accepted(tmp_path)
    state_path = store.directory / STATE_FILE
    before = snapshot(store.directory)
    stat_before = state_path.stat()

    _, state = accept_policy_file(_write(tmp_path, "again.json", data), store, PINNED, DEVICE, NOW)

    assert state.version == 1
    assert snapshot(store.directory) == before
    stat_after = state_path.stat()
    assert (stat_after.st_ino, stat_after.st_mtime_ns) == (
        stat_before.st_ino,
        stat_before.st_mtime_ns,
    )


def test_same_payload_with_other_signatures_keeps_the_stored_file(tmp_path: Path) -> None:
    store = TrustStore(tmp_path / "trust")
    pinned = signers(["A", "B"], 1)
    payload = to_bytes(policy_doc(1))
    first = sign(payload, ["A"])
    accept_policy_file(_write(tmp_path, "a.json", first), store, pinned, DEVICE, NOW)
    accept_policy_file(
        _write(tmp_path, "ab.json", sign(payload, ["A", "B"])), store, pinned, DEVICE, NOW
    )
    held = store.load()
    assert held is not None
    assert held.signed_policy == first


def test_missing_input_file_is_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    store, _ = _accepted(tmp_path)
    before = snapshot(store.directory)
    with pytest.raises(UnreadableFileError, match=r"nope\.json"):
        accept_policy_file(tmp_path / "nope.json", store, PINNED, DEVICE, NOW)
    assert snapshot(store.directory) == before


def test_reading_stops_one_byte_past_the_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.json", b"x" * (MAX_POLICY_BYTES + 10))
    with pytest.raises(OversizedError):
        read_file_limited(path)
    assert read_file_limited(_write(tmp_path, "ok", b"x" * 100), limit=100) == b"x" * 100
    with pytest.raises(OversizedError):
        read_file_limited(_write(tmp_path, "over", b"x" * 101), limit=100)


def test_a_directory_is_not_a_policy_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError):
        read_file_limited(tmp_path)


def test_crash_before_the_state_commit_keeps_the_old_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, v1 = _accepted(tmp_path, 1)
    real_replace = os.replace

    def crash_on_state(src: str, dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == STATE_FILE:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_state)
    v2 = _write(tmp_path, "v2.json", sign(policy_doc(2), ["A"]))
    with pytest.raises(StoreError, match="No space left"):
        accept_policy_file(v2, store, PINNED, DEVICE, NOW)
    monkeypatch.undo()

    held = store.load()
    assert held is not None
    assert held.state.version == 1
    assert held.signed_policy == v1
    assert not [p for p in store.directory.iterdir() if p.name.endswith(".tmp")]

    # The next successful save cleans up the orphaned policy file.
    accept_policy_file(v2, store, PINNED, DEVICE, NOW)
    assert sorted(snapshot(store.directory)) == [f"policy-{_payload_sha256(2)}.json", STATE_FILE]


def test_leftover_temp_file_from_a_crash_is_ignored(tmp_path: Path) -> None:
    store, _ = _accepted(tmp_path, 1)
    (store.directory / f".{STATE_FILE}.abc.tmp").write_bytes(b"{half a sta")
    held = store.load()
    assert held is not None
    assert held.state.version == 1


def test_store_path_that_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    blocker = _write(tmp_path, "blocker", b"")
    store = TrustStore(blocker / "trust")
    data = _write(tmp_path, "v1.json", sign(policy_doc(1), ["A"]))
    with pytest.raises(StoreError):
        accept_policy_file(data, store, PINNED, DEVICE, NOW)


def test_save_refuses_a_policy_that_does_not_match_the_state(tmp_path: Path) -> None:
    store, _ = _accepted(tmp_path, 1)
    held = store.load()
    assert held is not None
    with pytest.raises(ValueError, match="does not match"):
        store.save(held.state, sign(policy_doc(2), ["A"]))


def _break_not_json(store: TrustStore) -> None:
    (store.directory / STATE_FILE).write_bytes(b"{not json")


def _break_truncated(store: TrustStore) -> None:
    path = store.directory / STATE_FILE
    path.write_bytes(path.read_bytes()[:40])


def _break_future_format(store: TrustStore) -> None:
    path = store.directory / STATE_FILE
    doc = json.loads(path.read_bytes())
    doc["format"] = STATE_FORMAT + 1
    path.write_text(json.dumps(doc))


def _break_no_format(store: TrustStore) -> None:
    path = store.directory / STATE_FILE
    doc = json.loads(path.read_bytes())
    del doc["format"]
    path.write_text(json.dumps(doc))


def _break_schema(store: TrustStore) -> None:
    path = store.directory / STATE_FILE
    doc = json.loads(path.read_bytes())
    doc["version"] = "three"
    path.write_text(json.dumps(doc))


def _break_missing_policy(store: TrustStore) -> None:
    for path in store.directory.glob("policy-*.json"):
        path.unlink()


def _break_policy_mismatch(store: TrustStore) -> None:
    for path in store.directory.glob("policy-*.json"):
        path.write_bytes(sign(policy_doc(7), ["A"]))


def _break_binary(store: TrustStore) -> None:
    (store.directory / STATE_FILE).write_bytes(os.urandom(64) + b"\xff")


CORRUPTIONS = {
    "state not JSON": _break_not_json,
    "state truncated": _break_truncated,
    "state binary garbage": _break_binary,
    "state of a future format": _break_future_format,
    "state without a format": _break_no_format,
    "state schema-invalid": _break_schema,
    "policy file missing": _break_missing_policy,
    "policy file does not match the state": _break_policy_mismatch,
}


@pytest.mark.parametrize("name", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_corrupt_state_is_a_clear_error(name: str, tmp_path: Path) -> None:
    store, _ = _accepted(tmp_path)
    CORRUPTIONS[name](store)
    before = snapshot(store.directory)
    with pytest.raises(CorruptStateError, match="is corrupt"):
        store.load()
    v2 = _write(tmp_path, "v2.json", sign(policy_doc(2), ["A"]))
    with pytest.raises(CorruptStateError):
        accept_policy_file(v2, store, PINNED, DEVICE, NOW)
    assert snapshot(store.directory) == before  # never silently reset
