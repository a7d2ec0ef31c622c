"""Key files, signing and dataset keys: created private (0600), never
overwritten, loaded with clear errors."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from overt.wire.batch import BatchHeader, SignalCounts
from overt.wire.sealed import (
    dataset_public_b64,
    dataset_public_key,
    open_sealed,
    parse_sealed,
    seal_batch,
)
from policies.errors import KeyFileError
from policies.keys import (
    ed25519_public_key,
    keyid_of,
    load_dataset_private_key,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_model,
    raw_public_bytes,
    write_dataset_keypair,
    write_keypair,
)
from policies.model import key_id


def test_keypair_files_have_the_right_modes_and_load_back(tmp_path: Path) -> None:
    private_key, keyid = write_keypair(tmp_path / "it")
    private_path, public_path = tmp_path / "it.key", tmp_path / "it.pub"
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    assert b"BEGIN PRIVATE KEY" in private_path.read_bytes()
    assert b"BEGIN PUBLIC KEY" in public_path.read_bytes()
    assert keyid_of(load_private_key(private_path)) == keyid
    assert keyid_of(load_public_key(public_path)) == keyid == keyid_of(private_key)


def test_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    write_keypair(tmp_path / "it")
    before = (tmp_path / "it.key").read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        write_keypair(tmp_path / "it")
    assert (tmp_path / "it.key").read_bytes() == before


def test_existing_public_file_stops_keygen_before_any_private_key_is_written(
    tmp_path: Path,
) -> None:
    (tmp_path / "it.pub").write_text("someone else's")
    with pytest.raises(KeyFileError, match="already exists"):
        write_keypair(tmp_path / "it")
    assert not (tmp_path / "it.key").exists()


def test_keyid_is_sha256_of_the_raw_public_key(tmp_path: Path) -> None:
    private_key, keyid = write_keypair(tmp_path / "k")
    assert keyid == key_id(raw_public_bytes(private_key.public_key()))


def test_public_key_model_round_trips(tmp_path: Path) -> None:
    private_key, keyid = write_keypair(tmp_path / "k")
    model = public_key_model(private_key.public_key(), name="it-2026")
    assert model.keyid == keyid
    assert model.name == "it-2026"
    assert len(base64.b64decode(model.public_key)) == 32
    assert keyid_of(ed25519_public_key(model)) == keyid


def test_public_file_given_as_private_key_is_explained(tmp_path: Path) -> None:
    write_keypair(tmp_path / "k")
    with pytest.raises(KeyFileError, match="public key"):
        load_private_key(tmp_path / "k.pub")
    with pytest.raises(KeyFileError, match="private key"):
        load_public_key(tmp_path / "k.key")


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"],
    ids=["empty", "garbage", "bad PEM body"],
)
def test_unreadable_public_key_is_a_key_file_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pub"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=r"bad\.pub"):
        load_public_key(path)


def test_missing_key_file_is_a_key_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_private_key(tmp_path / "nope.key")


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "ec.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError, match="not an Ed25519"):
        load_private_key(tmp_path / "ec.key")
    with pytest.raises(KeyFileError, match="not an Ed25519"):
        load_public_key(tmp_path / "ec.pub")


# ------------------------------------------------------------------ dataset keys


def test_dataset_keypair_files_are_private_never_overwritten_and_open_a_batch(
    tmp_path: Path,
) -> None:
    private_path, public_path = write_dataset_keypair(tmp_path, "ds")
    assert stat.S_IMODE(os.stat(private_path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds.key", "ds.pub"]  # no temporaries
    key = load_dataset_private_key(private_path)
    assert dataset_public_b64(key) + "\n" == public_path.read_text()
    body = b"a batch body"
    header = BatchHeader("dev-1", "a" * 32, 1, 0, 0, 1, "ds", SignalCounts(), (), len(body))
    device = Ed25519PrivateKey.generate()
    public = dataset_public_key(public_path.read_text().strip())
    sealed = seal_batch(header.to_json(), body, public, device)
    assert open_sealed(parse_sealed(sealed), key) == body
    before = private_path.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_dataset_keypair(tmp_path, "ds")
    assert private_path.read_bytes() == before


def test_loading_a_wrong_or_missing_dataset_key_says_why(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_dataset_private_key(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_bytes(b"not a key")
    with pytest.raises(KeyFileError, match="not a PEM"):
        load_dataset_private_key(tmp_path / "junk.key")
    (tmp_path / "ed.key").write_bytes(private_key_pem(Ed25519PrivateKey.generate()))
    with pytest.raises(KeyFileError, match="not an X25519"):
        load_dataset_private_key(tmp_path / "ed.key")
