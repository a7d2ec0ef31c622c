"""The dataset on disk (format 1): file names, columns, ``dataset.json``.

This module owns what the data team reads: the names of the files, the
columns of a row and how a row is encoded, and the shape of
``dataset.json``. It writes only ``dataset.json``; the rows and frames are
written by :mod:`collector.export.dataset`, and the whole directory is
published at once by :mod:`collector.export.run`.

Layout, under the output directory::

    dataset.json       what was exported, from where, with which options,
                       the counts and every rejected batch (below)
    metadata.jsonl     one row per action that has a screenshot; its
                       ``file_name`` names the PNG (the Hugging Face
                       "imagefolder" convention: load it with
                       ``load_dataset("imagefolder", data_dir=OUT)``)
    actions.jsonl      one row per action, the same columns; ``file_name``
                       is null for an action with no screenshot before it
    sessions.jsonl     one row per session: device, app, time range, what
                       started and ended it, counts
    images/<session>/<n>.png
                       reassembled full window frames (lossless PNG of the
                       decoded keyframe with its deltas applied), only those
                       referenced by an action; ``n`` counts from 000000
                       within the session

Columns of an action row (:data:`COLUMNS`; every key is present in every
row, and a string column is never null, so a column's type never changes
between rows): ``file_name``, ``session_id``, ``index`` (within the
session), ``device_id``, ``batch_id``, ``seq``, ``t_ms`` and ``time`` (ISO
8601, UTC), ``end_ms``, ``app_id``, ``title`` ("" when dropped),
``title_state``, ``window_x``, ``window_y``, ``window_width``,
``window_height``, ``window_scale``, ``action``, ``button``, ``x``, ``y``,
``end_x``, ``end_y``, ``dx``, ``dy``, ``path`` (``[[ms since t_ms, x, y],
...]``), ``dwell_ms``, ``keys``, ``text``, ``redactions``,
``screenshot_ms``, ``image_width``, ``image_height``, ``image_scale`` (image
pixels per window pixel), ``image_x``, ``image_y``. Coordinates are
window-relative window pixels; ``image_x``/``image_y`` are the same point in
the screenshot's pixels. What each action is: :mod:`collector.export.actions`.

``dataset.json`` (format 1)::

    {"format": 1, "created_at": ISO, "source": DIR,
     "dataset_key": {"key_ids": [...], "public_key_sha256": HEX},
     "options": {"idle_split_seconds": S, "images": "referenced",
                 "png_compress_level": L},
     "counts": {"batches", "sealed_bytes", "events", "actions",
                "actions_with_screenshot", "frames", "images", "sessions",
                "rejected"},
     "files": {"metadata", "actions", "sessions", "images"},
     "rejected": [{"device_id", "seq", "batch_id", "reason", "detail"}, ...]}

No private key material is written anywhere: ``dataset.json`` names the
dataset key by its ids from the batch headers and the SHA-256 of its public
key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from overt.files import atomic_write

from .errors import OutputError

DATASET_FORMAT = 1
MANIFEST = "dataset.json"
METADATA = "metadata.jsonl"
ACTIONS = "actions.jsonl"
SESSIONS = "sessions.jsonl"
IMAGES = "images"

COLUMNS = (
    "file_name",
    "session_id",
    "index",
    "device_id",
    "batch_id",
    "seq",
    "t_ms",
    "time",
    "end_ms",
    "app_id",
    "title",
    "title_state",
    "window_x",
    "window_y",
    "window_width",
    "window_height",
    "window_scale",
    "action",
    "button",
    "x",
    "y",
    "end_x",
    "end_y",
    "dx",
    "dy",
    "path",
    "dwell_ms",
    "keys",
    "text",
    "redactions",
    "screenshot_ms",
    "image_width",
    "image_height",
    "image_scale",
    "image_x",
    "image_y",
)


def iso(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 in UTC, to the millisecond."""
    text = datetime.fromtimestamp(ms / 1000.0, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def in_column_order(row: Mapping[str, Any]) -> dict[str, Any]:
    """An action row with exactly the :data:`COLUMNS`, in their order."""
    return {k: row[k] for k in COLUMNS}


def json_line(doc: Mapping[str, Any]) -> bytes:
    """One line of a ``.jsonl`` file of the dataset."""
    return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a JSON-lines file of the dataset (for readers and tests)."""
    stream: IO[str]
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            yield json.loads(line)


def write_manifest(
    root: Path,
    *,
    created_ms: int,
    source: str,
    key_ids: Iterable[str],
    public_key: bytes,
    options: Mapping[str, Any],
    counts: Mapping[str, int],
    rejected: list[dict[str, Any]],
) -> None:
    """Write ``dataset.json`` into ``root``; raises :class:`OutputError`.

    ``public_key`` is the dataset key's raw public key (only its SHA-256 is
    written)."""
    manifest = {
        "format": DATASET_FORMAT,
        "created_at": iso(created_ms),
        "source": source,
        "dataset_key": {
            "key_ids": sorted(key_ids),
            "public_key_sha256": hashlib.sha256(public_key).hexdigest(),
        },
        "options": dict(options),
        "counts": dict(counts),
        "files": {
            "metadata": METADATA,
            "actions": ACTIONS,
            "sessions": SESSIONS,
            "images": IMAGES + "/",
        },
        "rejected": rejected,
    }
    data = json.dumps(manifest, indent=2, ensure_ascii=False).encode() + b"\n"
    try:
        atomic_write(root / MANIFEST, data)
    except OSError as exc:
        raise OutputError(f"cannot write {MANIFEST}: {exc.strerror or exc}") from exc
