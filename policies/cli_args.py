"""What the command lines share about their arguments.

``overt policy``, ``overt agent`` and ``overt admin`` each refuse arguments
that parse but cannot be used with the one :class:`UsageError` (their
dispatchers print it after the usage line and exit 2), and the two that take
``--trust`` keys build the same :class:`policies.model.SignerSet` from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from policies.keys import load_public_key, public_key_model
from policies.model import SignerSet


class UsageError(Exception):
    """Arguments that parse but cannot be used together (exit 2)."""


def trusted_signers(paths: Sequence[str | Path], threshold: int) -> SignerSet:
    """The signer set of ``--trust`` public key files and ``--threshold``."""
    keys = [public_key_model(load_public_key(path)) for path in paths]
    if len({k.keyid for k in keys}) != len(keys):
        raise UsageError("the same --trust key was given twice")
    if not 1 <= threshold <= len(keys):
        raise UsageError(
            f"--threshold must be between 1 and the number of --trust keys ({len(keys)})"
        )
    return SignerSet(keys=tuple(keys), threshold=threshold)
