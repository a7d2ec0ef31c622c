"""A sink that writes each batch as two plain files, so a person can inspect them.

This is a stand-in: sealing (HPKE to the dataset key, device signature) and
the durable spool arrive in a later issue, and then no plaintext body may be
written to disk. Until then, use it only for development and tests.

Layout (format: the batch header's ``format`` field, 1)::

    <dir>/<seq:012d>-<batch_id>.body.zst     the batch body, as encoded
    <dir>/<seq:012d>-<batch_id>.header.json  the canonical header JSON

Files are readable by their owner only (mode 0600, the directory 0700). Each
is written atomically (temporary file in the same directory, fsync,
``os.replace``, then fsync of the directory). The body is written before the
header, so after a crash a batch is either complete (its header exists) or
has at most an orphan body, which ``load_batches`` ignores; a ``.tmp`` file is
never a batch. Writing the same batch twice replaces it with identical bytes.

``load_batches`` reads a directory back with the standard library only (no
import of Overt), for tests and for people inspecting a capture.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from overt.files import atomic_write
from overt.wire.batch import Batch

from .base import SinkError

log = logging.getLogger(__name__)

HEADER_SUFFIX = ".header.json"
BODY_SUFFIX = ".body.zst"


class DirectorySink:
    """Writes ``<seq>-<batch_id>.header.json`` and ``.body.zst`` into a directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def write(self, batch: Batch) -> None:
        h = batch.header
        stem = f"{h.seq:012d}-{h.batch_id}"
        try:
            # Captured content, unencrypted until sealing exists: the owner only.
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.path / (stem + BODY_SUFFIX), batch.body, mode=0o600)
            atomic_write(self.path / (stem + HEADER_SUFFIX), h.to_json(), mode=0o600)
        except OSError as exc:
            raise SinkError(f"cannot write batch {h.batch_id} to {self.path}: {exc}") from exc
        log.debug("wrote batch seq=%d id=%s body=%d bytes", h.seq, h.batch_id, len(batch.body))


def load_batches(path: str | os.PathLike[str]) -> list[tuple[dict[str, object], bytes]]:
    """Every complete batch in a directory, by sequence number: (header dict, body bytes)."""
    out: list[tuple[int, dict[str, object], bytes]] = []
    for header_path in Path(path).glob("*" + HEADER_SUFFIX):
        stem = header_path.name[: -len(HEADER_SUFFIX)]
        header = json.loads(header_path.read_bytes())
        body = (header_path.parent / (stem + BODY_SUFFIX)).read_bytes()
        out.append((int(header["seq"]), header, body))
    out.sort(key=lambda item: item[0])
    return [(h, b) for _, h, b in out]
