"""Key files: the Ed25519 keys that sign policies and grants, and the X25519
dataset keys batches are sealed to. Generate, write, load, describe.

Owns the key file formats:

- ``NAME.key``: the private key, PKCS#8 PEM, unencrypted, written by
  ``overt.files.write_private`` (mode 0600 from creation, so it is never
  readable by others, not even for an instant; complete or absent after a
  crash; an existing key is never overwritten). Keep it offline.
- ``NAME.pub``: the public key: for a signing key, SubjectPublicKeyInfo PEM;
  for a dataset key, its raw 32 bytes as base64 on one line (the form a
  policy's ``dataset_key.public_key`` takes). Safe to share.

and the conversion from a public key to :class:`policies.model.PublicKey` (key
id + base64), the form a policy names keys in. A key id is the hex SHA-256 of
the raw 32-byte public key.

This module reads and writes key files only; it does not verify anything (see
``policies.verify``), never touches the trust store, and leaves parsing a
public key's base64 to ``overt.wire.sealed``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from overt.files import atomic_write, write_new, write_private
from overt.wire.sealed import dataset_public_b64
from policies.errors import KeyFileError
from policies.model import PublicKey, key_id

#: A PEM key file is a few hundred bytes; anything much larger is not one.
MAX_KEY_FILE_BYTES = 16 * 1024

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def keyid_of(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """The key id of a key (for a private key, of its public half)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return key_id(raw_public_bytes(public))


def public_key_model(public_key: Ed25519PublicKey, name: str = "") -> PublicKey:
    """The policy form of a public key, for ``next_signers`` or ``grant_signers``."""
    raw = raw_public_bytes(public_key)
    return PublicKey(keyid=key_id(raw), public_key=base64.b64encode(raw).decode("ascii"), name=name)


def ed25519_public_key(model: PublicKey) -> Ed25519PublicKey:
    """The cryptographic key behind a validated :class:`PublicKey`."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(model.public_key))


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def keypair_paths(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(NAME.key, NAME.pub)`` for ``NAME``."""
    base = os.fspath(prefix)
    return Path(base + PRIVATE_SUFFIX), Path(base + PUBLIC_SUFFIX)


def write_keypair(prefix: str | os.PathLike[str]) -> tuple[Ed25519PrivateKey, str]:
    """Generate a keypair and write ``NAME.key`` (0600) and ``NAME.pub`` (0644).

    Returns the private key and its key id. Raises :class:`KeyFileError` if
    either file already exists or cannot be written; nothing is left behind on
    failure.
    """
    private_path, public_path = keypair_paths(prefix)
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key")
    private_key = generate_private_key()
    created: list[Path] = []
    path = private_path
    try:
        write_private(path, private_key_pem(private_key))
        created.append(path)
        path = public_path
        write_new(path, public_key_pem(private_key.public_key()), 0o644)
        created.append(path)
    except OSError as exc:
        for made in created:
            made.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from exc
        raise KeyFileError(f"cannot write key file: {exc}") from exc
    return private_key, keyid_of(private_key)


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {os.fspath(path)}: {exc.strerror}") from exc
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{os.fspath(path)} is too large to be a key file")
    return data


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load an unencrypted PKCS#8 PEM Ed25519 private key (a ``NAME.key``)."""
    data = _read_key_file(path)
    name = os.fspath(path)
    if b"PUBLIC KEY-----" in data:
        raise KeyFileError(f"{name} holds a public key; signing needs the private .key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise KeyFileError(f"{name} is encrypted; only unencrypted keys are supported") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{name} is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{name} is not an Ed25519 key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Load a SubjectPublicKeyInfo PEM Ed25519 public key (a ``NAME.pub``)."""
    data = _read_key_file(path)
    name = os.fspath(path)
    if b"PRIVATE KEY-----" in data:
        raise KeyFileError(f"{name} holds a private key; pass the public .pub file instead")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{name} is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{name} is not an Ed25519 key")
    return key


# ---------------------------------------------------------------- dataset keys


def write_dataset_keypair(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Create the dataset key ``NAME.key`` and its ``NAME.pub`` in ``directory``; return both paths.

    The private key is never overwritten; ``NAME.pub`` is replaced, since it
    is derived from the key. Raises :class:`KeyFileError` if the key exists or
    a file cannot be written.
    """
    key = X25519PrivateKey.generate()
    private_path = Path(directory) / f"{name}{PRIVATE_SUFFIX}"
    public_path = Path(directory) / f"{name}{PUBLIC_SUFFIX}"
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        write_private(private_path, pem)
        atomic_write(public_path, (dataset_public_b64(key) + "\n").encode("ascii"))
    except FileExistsError as exc:
        raise KeyFileError(f"{private_path} exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot write dataset key {name!r}: {exc.strerror or exc}") from exc
    return private_path, public_path


def load_dataset_private_key(path: str | os.PathLike[str]) -> X25519PrivateKey:
    """Read a dataset private key file; raises :class:`KeyFileError` with the reason."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_KEY_FILE_BYTES)
        key = serialization.load_pem_private_key(data, password=None)
    except OSError as exc:
        raise KeyFileError(f"cannot read dataset key {path}: {exc.strerror or exc}") from exc
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} is not a PEM private key") from exc
    if not isinstance(key, X25519PrivateKey):
        raise KeyFileError(f"{path} is not an X25519 dataset key")
    return key
