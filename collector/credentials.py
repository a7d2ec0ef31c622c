"""Secrets the collector hands out and checks: tokens, ids and admin passwords.

- **Tokens** (admin bearer tokens, enrollment tokens) are 256 random bits,
  URL-safe base64, behind a prefix that says what they are. They are shown
  once and stored as their SHA-256: the token's entropy makes a slow hash
  unnecessary, and a lookup by hash takes the same time whatever the guess.
- **Passwords** (admin users of the web pages) are stored as scrypt records
  ``scrypt$N$r$p$<salt b64>$<hash b64>`` with a per-user random salt; the
  parameters travel with the hash so they can be raised later without
  invalidating existing records.

Pure functions apart from the random source; no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

ADMIN_TOKEN_PREFIX = "ovt_admin_"  # noqa: S105 (a prefix, not a secret)
ENROLLMENT_TOKEN_PREFIX = "ovt_enroll_"  # noqa: S105

#: Longest token or password considered at all (bounds hashing work).
MAX_SECRET_CHARS = 1024


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_id(prefix: str) -> str:
    """A short random id such as ``r-3f9a0c1d2b4e5f60`` (valid as a policy ``Name``)."""
    return f"{prefix}-{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class ScryptParams:
    n: int = 2**15
    r: int = 8
    p: int = 1
    salt_bytes: int = 16
    hash_bytes: int = 32

    @property
    def maxmem(self) -> int:
        return 128 * self.r * self.n * self.p + 2**20


DEFAULT_SCRYPT = ScryptParams()


def hash_password(password: str, params: ScryptParams = DEFAULT_SCRYPT) -> str:
    """An scrypt record for ``password`` with a fresh random salt."""
    if not password or len(password) > MAX_SECRET_CHARS:
        raise ValueError(f"a password must have 1 to {MAX_SECRET_CHARS} characters")
    salt = secrets.token_bytes(params.salt_bytes)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=params.maxmem,
        dklen=params.hash_bytes,
    )
    b64 = base64.b64encode
    return f"scrypt${params.n}${params.r}${params.p}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, record: str) -> bool:
    """Whether ``password`` matches an scrypt record; ``False`` for any unreadable record."""
    if not password or len(password) > MAX_SECRET_CHARS:
        return False
    try:
        scheme, n_text, r_text, p_text, salt_b64, hash_b64 = record.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
    except (ValueError, binascii.Error):
        return False
    if scheme != "scrypt" or not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    params = ScryptParams(n=n, r=r, p=p)
    try:
        digest = hashlib.scrypt(
            password.encode("utf-8", "surrogatepass"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=params.maxmem,
            dklen=len(expected),
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)
