"""``overt export`` on a real collector data directory (SQLite + blob segments).

The store is filled through the collector's own ``SQLiteStorage`` (enrolment
and batch writes, as its HTTP layer would do them), closed, and exported by
the ``overt`` command: once as a real process, otherwise in-process through
``collector.export.command.main`` for the exit codes and messages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.export.command import main
from overt.wire.batch import Batch
from policies.keys import load_dataset_private_key, write_dataset_keypair

from ._batches import DEVICE, T_MS, Keys, make_batch, png, screen
from ._store import fill_store
from .test_run import _flip, _records

NOW_MS = T_MS + 3_600_000


@dataclass
class Store:
    data: Path
    key: Path
    batches: list[Batch]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """Three batches of one enrolled device; the second one's ciphertext has a flipped bit."""
    key_path, _ = write_dataset_keypair(tmp_path, "dataset")
    keys = Keys(dataset=load_dataset_private_key(key_path))
    batches = []
    for seq in (1, 2, 3):
        records, images = _records(T_MS + seq * 1000, seq)
        batches.append(make_batch(records, images, seq=seq))
    sealed = [keys.seal(b) for b in batches]
    sealed[1] = _flip(sealed[1], len(sealed[1]) - 5)
    data = tmp_path / "collector-data"
    fill_store(data, keys, list(zip(batches, sealed, strict=True)), NOW_MS)
    return Store(data, key_path, batches)


def test_the_command_exports_a_collector_data_directory(tmp_path: Path, store: Store) -> None:
    out = tmp_path / "dataset"
    before = sorted(p.relative_to(store.data) for p in store.data.rglob("*"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "overt",
            "export",
            "--data",
            str(store.data),
            "--key",
            str(store.key),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("exported 2 batches")
    assert "rejected batches 1" in proc.stdout
    assert f"device {DEVICE} seq 2 batch {store.batches[1].header.batch_id}: bad signature" in (
        proc.stdout
    )
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in rows] == [1, 3]
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["source"] == str(store.data)
    assert manifest["counts"]["rejected"] == 1
    # the data directory was only read
    assert sorted(p.relative_to(store.data) for p in store.data.rglob("*")) == before


def test_progress_on_request_goes_to_stderr(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(store.data), "--key", str(store.key), "--out", str(tmp_path / "o")]
    assert main([*args, "--progress", "--jobs", "0"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("\r[")
    assert err.endswith("] 3/3 batches  " + err.rsplit("batches  ", 1)[1])
    assert err.endswith("MB/s\n")


def test_an_unreadable_key_is_one_line_and_exit_1(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    out = tmp_path / "o"
    code = main(["--data", str(store.data), "--key", str(bad), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"overt export: {bad} is not a PEM private key\n"
    assert not out.exists()


def test_a_directory_that_is_not_a_collectors_is_refused_and_left_alone(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["--data", str(empty), "--key", str(store.key), "--out", str(tmp_path / "o")])
    assert code == 1
    assert "is not a collector data directory" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


def test_nothing_exportable_is_exit_1_and_writes_nothing(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    other_key, _ = write_dataset_keypair(tmp_path, "other")
    out = tmp_path / "o"
    code = main(
        ["--data", str(store.data), "--key", str(other_key), "--out", str(out), "--jobs", "0"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "rejected batches 3" in captured.out
    assert captured.out.count("cannot decrypt") == 2
    assert captured.err == "overt export: no batch could be exported\n"
    assert not out.exists()


def test_an_output_directory_in_use_is_exit_1(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep").write_bytes(png(screen(32, 32, 1)))
    code = main(
        ["--data", str(store.data), "--key", str(store.key), "--out", str(out), "--jobs", "0"]
    )
    assert code == 1
    assert "not an empty directory" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--key", "k", "--out", "o"],
        ["--data", "d", "--key", "k", "--out", "o", "--idle-minutes", "0"],
        ["--data", "d", "--key", "k", "--out", "o", "--png-level", "12"],
        ["--data", "d", "--key", "k", "--out", "o", "--bogus"],
        ["--data", "d", "--key", "k", "--out", "o", "--jobs", "-1"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("overt export: ")
    assert err.count("\n") == 1


def test_a_batch_damaged_in_the_store_is_reported_and_the_rest_exported(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from collector.blobs import segment_name
    from collector.store.sqlite import DB_FILE

    with sqlite3.connect(store.data / DB_FILE) as conn:
        segment, offset = conn.execute(
            "SELECT segment_id, segment_offset FROM batches WHERE seq = 3"
        ).fetchone()
    path = next(store.data.rglob(segment_name(segment)))
    raw = bytearray(path.read_bytes())
    raw[offset + 40] ^= 0xFF  # on disk, after the checksum was recorded
    path.write_bytes(bytes(raw))
    out = tmp_path / "o"
    code = main(
        ["--data", str(store.data), "--key", str(store.key), "--out", str(out), "--jobs", "0"]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "rejected batches 2" in printed
    assert f"seq 3 batch {store.batches[2].header.batch_id}: corrupt in store" in printed
    rows = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in rows] == [1]
