"""The storage interface suite: what every ``collector.store.protocols.Storage`` must do.

Written against the Protocol and its records only. ``store_factory`` opens
the implementation under test on the same place each time it is called (so
"close and open again" tests durability); to run the suite against another
backend (PostgreSQL + object storage), add it to ``IMPLEMENTATIONS``.
Implementation details (segment files, SQLite recovery) are tested in
``test_sqlite_store.py``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from collector.config import StorageConfig
from collector.credentials import token_hash
from collector.errors import (
    AlreadyDecidedError,
    DeviceExistsError,
    EnrollmentTokenError,
    NotFoundError,
    PolicyVersionError,
)
from collector.store.protocols import Storage
from collector.store.records import (
    AdminTokenRecord,
    AdminUserRecord,
    AuditEvent,
    BatchOutcome,
    EnrollmentTokenRecord,
    ExemptionDecision,
    ExemptionRecord,
    ExemptionStatus,
    GrantRecord,
    PolicyPutOutcome,
    PolicyRecord,
)
from collector.store.sqlite import SQLiteStorage

from ._build import batch_write

StoreFactory = Callable[[], Storage]


def _sqlite(place: Path) -> Storage:
    # A small segment limit, so that the suite also crosses segment boundaries.
    return SQLiteStorage(StorageConfig(data_dir=place, segment_max_bytes=64 * 1024))


IMPLEMENTATIONS: dict[str, Callable[[Path], Storage]] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    opened: list[Storage] = []

    def open_store() -> Storage:
        store = IMPLEMENTATIONS[request.param](tmp_path / "store")
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Storage:
    return store_factory()


def _event(action: str = "test", subject: str = "s", at_ms: int = 1) -> AuditEvent:
    return AuditEvent(at_ms=at_ms, actor="admin:alice", action=action, subject=subject)


def _token(
    store: Storage, secret: str, *, expires_at_ms: int = 10_000, group: str = "office"
) -> None:
    store.add_enrollment_token(
        EnrollmentTokenRecord(
            token_id=f"et-{secret}",
            token_hash=token_hash(secret),
            tenant="example-corp",
            group=group,
            created_at_ms=1,
            expires_at_ms=expires_at_ms,
            created_by="admin:alice",
        ),
        _event("enrollment_token.created"),
    )


def _device(store: Storage, device_id: str = "dev-1", *, group: str = "office") -> None:
    secret = f"token-for-{device_id}"
    _token(store, secret, group=group)
    store.enroll_device(token_hash(secret), device_id, "AAAA", "laptop", 5, _event("enrolled"))


# ------------------------------------------------------------- enrollment


def test_enrolling_uses_the_token_and_takes_its_tenant_and_group(store: Storage) -> None:
    _token(store, "secret", group="lab")
    device = store.enroll_device(token_hash("secret"), "dev-1", "AAAA", "h", 5, _event("enrolled"))
    assert (device.tenant, device.group, device.public_key) == ("example-corp", "lab", "AAAA")
    assert store.get_device("dev-1") == device
    [token] = store.list_enrollment_tokens()
    assert (token.used_at_ms, token.device_id) == (5, "dev-1")
    [event] = [e for e in store.list_audit(10) if e.action == "enrolled"]
    assert dict(event.detail) == {"token_id": "et-secret", "tenant": "example-corp", "group": "lab"}


@pytest.mark.parametrize(
    ("case", "secret", "now_ms"),
    [
        ("unknown", "never-issued", 5),
        ("expired", "secret", 10_000),
        ("expired later", "secret", 99_999),
    ],
)
def test_a_bad_token_enrolls_nothing(store: Storage, case: str, secret: str, now_ms: int) -> None:
    _token(store, "secret", expires_at_ms=10_000)
    with pytest.raises(EnrollmentTokenError):
        store.enroll_device(token_hash(secret), "dev-1", "AAAA", "h", now_ms, _event())
    assert store.get_device("dev-1") is None
    assert store.list_enrollment_tokens()[0].used_at_ms is None


def test_a_token_is_single_use(store: Storage) -> None:
    _token(store, "secret")
    store.enroll_device(token_hash("secret"), "dev-1", "AAAA", "h", 5, _event())
    with pytest.raises(EnrollmentTokenError):
        store.enroll_device(token_hash("secret"), "dev-2", "BBBB", "h", 6, _event())
    assert store.get_device("dev-2") is None


def test_a_taken_device_id_is_refused_and_the_token_stays_unused(store: Storage) -> None:
    _device(store, "dev-1")
    _token(store, "second")
    with pytest.raises(DeviceExistsError):
        store.enroll_device(token_hash("second"), "dev-1", "BBBB", "h", 6, _event())
    assert store.get_device("dev-1").public_key == "AAAA"  # type: ignore[union-attr]
    store.enroll_device(token_hash("second"), "dev-2", "BBBB", "h", 7, _event())


def test_revoking_a_device_marks_it_once(store: Storage) -> None:
    _device(store)
    assert store.revoke_device("dev-1", 9, _event("revoked"))
    assert not store.revoke_device("dev-1", 10, _event("revoked"))
    assert not store.revoke_device("nobody", 10, _event("revoked"))
    assert store.get_device("dev-1").revoked_at_ms == 9  # type: ignore[union-attr]
    assert [e.action for e in store.list_audit(10)].count("revoked") == 1


def test_devices_are_listed_by_id(store: Storage) -> None:
    for device_id in ("dev-b", "dev-a", "dev-c"):
        _device(store, device_id)
    assert [d.device_id for d in store.list_devices()] == ["dev-a", "dev-b", "dev-c"]


# ------------------------------------------------------ admin credentials


def test_admin_tokens_are_found_by_hash_only(store: Storage) -> None:
    record = AdminTokenRecord("at-1", "alice", token_hash("tok"), 1)
    store.add_admin_token(record, _event())
    assert store.find_admin_token(token_hash("tok")) == record
    assert store.find_admin_token(token_hash("other")) is None


def test_an_admin_users_password_can_be_changed_keeping_its_creation(store: Storage) -> None:
    store.set_admin_user(AdminUserRecord("alice", "scrypt$1", 1, 1), _event())
    store.set_admin_user(AdminUserRecord("alice", "scrypt$2", 5, 5), _event())
    assert store.get_admin_user("alice") == AdminUserRecord("alice", "scrypt$2", 1, 5)
    assert store.get_admin_user("bob") is None


# ------------------------------------------------------- replay protection


def test_a_nonce_is_claimed_once_until_it_expires(store: Storage) -> None:
    assert store.claim_nonce("dev-1", "n" * 22, expires_ms=100, now_ms=10)
    assert not store.claim_nonce("dev-1", "n" * 22, expires_ms=100, now_ms=50)
    assert store.claim_nonce("dev-2", "n" * 22, expires_ms=100, now_ms=50)  # per device
    assert store.claim_nonce("dev-1", "n" * 22, expires_ms=300, now_ms=101)


def test_claimed_nonces_survive_a_restart(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.claim_nonce("dev-1", "n" * 22, expires_ms=100, now_ms=10)
    store.close()
    again = store_factory()
    assert not again.claim_nonce("dev-1", "n" * 22, expires_ms=100, now_ms=20)


# ---------------------------------------------------------------- batches


def test_a_batch_is_stored_once_and_read_back_byte_for_byte(store: Storage) -> None:
    _device(store)
    write = batch_write("dev-1", 1, received_at_ms=42)
    assert store.put_batch(write) is BatchOutcome.STORED
    assert store.put_batch(write) is BatchOutcome.DUPLICATE
    assert store.count_batches() == 1
    stored = store.get_batch("dev-1", 1)
    assert stored is not None
    assert (stored.sealed, stored.batch_id, stored.received_at_ms) == (write.sealed, "dev-1-b1", 42)
    assert stored.header["seq"] == 1
    assert stored.header_json == write.header


def test_the_same_seq_with_other_bytes_conflicts_changes_nothing_and_is_audited(
    store: Storage,
) -> None:
    _device(store)
    first = batch_write("dev-1", 1)
    store.put_batch(first)
    other = batch_write("dev-1", 1, b"different bytes" * 30)
    assert store.put_batch(other) is BatchOutcome.CONFLICT
    assert store.get_batch("dev-1", 1).sealed == first.sealed  # type: ignore[union-attr]
    assert next(e.action for e in store.list_audit(5)) == "batch.sequence_conflict"


def test_storing_updates_the_devices_counters(store: Storage) -> None:
    _device(store)
    a, b = batch_write("dev-1", 1, received_at_ms=10), batch_write("dev-1", 2, received_at_ms=20)
    b = replace(b, policy_version=3)
    store.put_batch(a)
    store.put_batch(b)
    store.put_batch(b)  # a duplicate counts for nothing
    device = store.get_device("dev-1")
    assert device is not None
    assert (device.batches, device.bytes) == (2, len(a.sealed) + len(b.sealed))
    assert (device.last_seen_ms, device.policy_version) == (20, 3)


def test_batches_are_read_in_device_and_sequence_order(store: Storage) -> None:
    for device_id in ("dev-b", "dev-a"):
        _device(store, device_id)
    # More than one page of reads, written out of order.
    for seq in (*range(300, 0, -1),):
        store.put_batch(batch_write("dev-b" if seq % 3 else "dev-a", seq))
    keys = [(b.device_id, b.seq) for b in store.iter_batches()]
    assert keys == sorted(keys)
    assert len(keys) == 300
    only_a = [b.seq for b in store.iter_batches("dev-a")]
    assert only_a == sorted(s for s in range(1, 301) if s % 3 == 0)
    assert store.count_batches("dev-a") == 100


def test_concurrent_writers_store_each_batch_once(store: Storage) -> None:
    for n in range(4):
        _device(store, f"dev-{n}")
    writes = [batch_write(f"dev-{n}", seq) for n in range(4) for seq in range(1, 26)]
    resent = writes + writes  # every batch twice, from many threads at once
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(store.put_batch, resent))
    assert outcomes.count(BatchOutcome.STORED) == len(writes)
    assert outcomes.count(BatchOutcome.DUPLICATE) == len(writes)
    assert store.count_batches() == len(writes)
    assert sum(d.batches for d in store.list_devices()) == len(writes)


def test_submitted_batches_resolve_their_futures(store: Storage) -> None:
    _device(store)
    futures = [store.submit_batch(batch_write("dev-1", seq)) for seq in range(1, 40)]
    assert {f.result(timeout=60) for f in futures} == {BatchOutcome.STORED}


def test_erasure_deletes_overlapping_batches_rows_and_bytes(store: Storage) -> None:
    _device(store)
    _device(store, "dev-2")
    for seq in range(1, 6):  # batch seq covers [1_790_000_000_000 + seq min, +59 s]
        store.put_batch(batch_write("dev-1", seq))
    store.put_batch(batch_write("dev-2", 3))
    start = 1_790_000_000_000 + 2 * 60_000 + 30_000  # inside batch 2
    end = 1_790_000_000_000 + 3 * 60_000 + 10  # inside batch 3
    deleted = store.erase_batches("dev-1", start, end, _event("erasure", "dev-1"))
    assert deleted == 2
    assert [b.seq for b in store.iter_batches("dev-1")] == [1, 4, 5]
    assert store.get_batch("dev-1", 2) is None
    assert store.count_batches("dev-2") == 1  # another device's batch stays
    device = store.get_device("dev-1")
    assert device is not None
    assert device.batches == 3
    [event] = [e for e in store.list_audit(10) if e.action == "erasure"]
    assert event.detail["deleted"] == 2


def test_an_erased_seq_can_be_sent_again(store: Storage) -> None:
    _device(store)
    write = batch_write("dev-1", 1)
    store.put_batch(write)
    store.erase_batches("dev-1", 0, 2**62, _event("erasure"))
    assert store.put_batch(write) is BatchOutcome.STORED


# --------------------------------------------------------------- policies


def _policy(version: int, groups: tuple[str, ...] = ("office",), tenant: str = "t") -> PolicyRecord:
    envelope = f"signed policy {tenant} {version} {groups}".encode()
    return PolicyRecord(
        tenant=tenant,
        version=version,
        groups=groups,
        envelope=envelope,
        sha256=hashlib.sha256(envelope).hexdigest(),
        expires_ms=10**13,
        stored_at_ms=1,
    )


def test_the_newest_covering_policy_is_served(store: Storage) -> None:
    assert store.put_policy(_policy(1), _event()) is PolicyPutOutcome.STORED
    assert store.put_policy(_policy(2, ("lab",)), _event()) is PolicyPutOutcome.STORED
    assert store.put_policy(_policy(3), _event()) is PolicyPutOutcome.STORED
    assert store.latest_policy("t", "office").version == 3  # type: ignore[union-attr]
    assert store.latest_policy("t", "lab").version == 2  # type: ignore[union-attr]
    assert store.latest_policy("t", "sales") is None
    assert store.latest_policy("other", "office") is None
    store.put_policy(_policy(4, ("*",)), _event())
    assert store.latest_policy("t", "sales").version == 4  # type: ignore[union-attr]


def test_the_identical_policy_again_is_unchanged(store: Storage) -> None:
    store.put_policy(_policy(1), _event())
    assert store.put_policy(_policy(1), _event()) is PolicyPutOutcome.UNCHANGED
    assert len(store.list_policies()) == 1


@pytest.mark.parametrize(
    ("stored", "new"),
    [
        (_policy(2), _policy(1)),  # rollback
        (_policy(2), replace(_policy(2, ("office", "lab")))),  # same version, other bytes
        (_policy(2, ("*",)), _policy(2, ("lab",))),  # "*" overlaps everything
    ],
    ids=["lower", "same-version", "wildcard"],
)
def test_a_policy_not_above_an_overlapping_one_is_refused(
    store: Storage, stored: PolicyRecord, new: PolicyRecord
) -> None:
    store.put_policy(stored, _event())
    with pytest.raises(PolicyVersionError):
        store.put_policy(new, _event("refused"))
    assert store.list_policies() == [stored]
    assert "refused" not in [e.action for e in store.list_audit(10)]


def test_policies_of_other_groups_or_tenants_do_not_block(store: Storage) -> None:
    store.put_policy(_policy(5), _event())
    assert store.put_policy(_policy(1, ("lab",)), _event()) is PolicyPutOutcome.STORED
    assert store.put_policy(_policy(1, tenant="u"), _event()) is PolicyPutOutcome.STORED


# ------------------------------------------------------------- exemptions


def _request(request_id: str = "r-1", device_id: str = "dev-1", at: int = 1) -> ExemptionRecord:
    return ExemptionRecord(
        request_id=request_id,
        device_id=device_id,
        tenant="t",
        group="office",
        category="battery",
        reason="laptop rarely on a charger",
        duration_days=7,
        created_at_ms=at,
    )


def _grant(request_id: str = "r-1", expires_ms: int = 1000) -> GrantRecord:
    return GrantRecord(
        grant_id=f"g-{request_id}",
        request_id=request_id,
        device_id="dev-1",
        tenant="t",
        category="battery",
        issued_at_ms=10,
        expires_ms=expires_ms,
        envelope=b"signed grant",
    )


def test_exemption_requests_are_listed_newest_first_and_filtered(store: Storage) -> None:
    store.add_exemption(_request("r-1", at=1), _event())
    store.add_exemption(_request("r-2", "dev-2", at=2), _event())
    store.decide_exemption(
        ExemptionDecision("r-1", ExemptionStatus.DENIED, 5, "admin:alice", "no"), _event()
    )
    assert [r.request_id for r in store.list_exemptions()] == ["r-2", "r-1"]
    assert [r.request_id for r in store.list_exemptions(status=ExemptionStatus.PENDING)] == ["r-2"]
    assert [r.request_id for r in store.list_exemptions(device_id="dev-1")] == ["r-1"]
    assert store.get_exemption("r-1").decision_reason == "no"  # type: ignore[union-attr]


def test_approval_stores_the_grant_with_the_decision(store: Storage) -> None:
    store.add_exemption(_request(), _event())
    decided = store.decide_exemption(
        ExemptionDecision("r-1", ExemptionStatus.APPROVED, 5, "admin:alice", "", _grant()),
        _event("exemption.approved", "r-1"),
    )
    assert (decided.status, decided.grant_id, decided.grant_expires_ms) == (
        ExemptionStatus.APPROVED,
        "g-r-1",
        1000,
    )
    assert store.grants_for_device("dev-1", now_ms=999) == [_grant()]
    assert store.grants_for_device("dev-1", now_ms=1000) == []  # expired
    assert store.grants_for_device("dev-2", now_ms=0) == []


def test_a_request_is_decided_once(store: Storage) -> None:
    store.add_exemption(_request(), _event())
    store.decide_exemption(ExemptionDecision("r-1", ExemptionStatus.DENIED, 5, "a", "no"), _event())
    with pytest.raises(AlreadyDecidedError):
        store.decide_exemption(
            ExemptionDecision("r-1", ExemptionStatus.APPROVED, 6, "a", "", _grant()),
            _event("second"),
        )
    assert store.grants_for_device("dev-1", 0) == []
    assert "second" not in [e.action for e in store.list_audit(10)]
    with pytest.raises(NotFoundError):
        store.decide_exemption(
            ExemptionDecision("r-9", ExemptionStatus.DENIED, 5, "a", "no"), _event()
        )


# ------------------------------------------------------------------ audit


def test_the_audit_log_pages_newest_first(store: Storage) -> None:
    for n in range(1, 8):
        store.append_audit(_event(f"a{n}", at_ms=n))
    page = store.list_audit(3)
    assert [e.action for e in page] == ["a7", "a6", "a5"]
    assert page[0].event_id is not None
    older = store.list_audit(3, before_id=page[-1].event_id)
    assert [e.action for e in older] == ["a4", "a3", "a2"]


def test_audit_details_keep_their_structure(store: Storage) -> None:
    store.append_audit(AuditEvent(1, "device:d", "consent.accepted", "d", {"v": 3, "ok": True}))
    assert dict(store.list_audit(1)[0].detail) == {"v": 3, "ok": True}


# ------------------------------------------------------------- durability


def test_everything_written_is_there_after_closing_and_opening_again(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    _device(store)
    writes = [batch_write("dev-1", seq) for seq in range(1, 21)]
    for write in writes:
        store.put_batch(write)
    store.put_policy(_policy(1), _event())
    store.add_exemption(_request(), _event())
    store.close()
    again = store_factory()
    assert [b.sealed for b in again.iter_batches()] == [w.sealed for w in writes]
    assert again.latest_policy("t", "office") is not None
    assert again.get_exemption("r-1") is not None
    assert again.get_device("dev-1").batches == 20  # type: ignore[union-attr]


def test_closing_twice_is_harmless_and_later_writes_are_refused(store: Storage) -> None:
    store.close()
    store.close()
    with pytest.raises(Exception) as raised:
        store.put_batch(batch_write("dev-1", 1))
    assert "closed" in str(raised.value)


def test_many_threads_reading_while_one_writes(store: Storage) -> None:
    _device(store)
    stop = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                list(store.iter_batches())
                store.list_devices()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    for seq in range(1, 31):
        store.put_batch(batch_write("dev-1", seq))
    stop.set()
    for thread in readers:
        thread.join()
    assert errors == []
    assert store.count_batches() == 30
