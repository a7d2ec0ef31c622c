"""``overt export``: the data team's command line.

``overt export --data DIR --key DATASET.key --out OUT`` reads the batches the
collector stored under ``DIR``, verifies each one's device signature,
decrypts it with the dataset private key, checks it, and writes a
training-ready dataset to ``OUT`` (``metadata.jsonl`` + ``images/`` load as
a Hugging Face "imagefolder" dataset). How a batch goes from the store to
the files is drawn in :mod:`collector.export`.

This module owns what the person at the terminal sees: the arguments, the
dataset key, the progress bar on stderr, the summary on stdout, one-line
error messages and the exit status. It builds the :class:`ExportConfig`
once and hands it, the key and the store's batches to
:func:`~collector.export.run.export_batches`.

Exit status: 0 when at least one batch was exported (rejected batches are
listed), 1 when nothing could be exported or the key, the data directory or
the output directory is unusable, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from policies.errors import KeyFileError
from policies.keys import load_dataset_private_key

from .errors import DatasetKeyError, ExportError
from .run import ExportConfig, export_batches
from .store import open_store

__all__ = ["ProgressBar", "load_key", "main"]


def main(argv: Sequence[str] | None = None, prog: str = "overt export") -> int:
    """Run ``overt export`` with ``argv``; returns the exit status."""
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{prog}: %(message)s")
    config = ExportConfig(
        out=Path(args.out),
        idle_split_s=args.idle_minutes * 60.0,
        png_compress_level=args.png_level,
        jobs=args.jobs,
        source=os.path.abspath(args.data),
    )
    try:
        key = load_key(args.key)
        store = open_store(Path(args.data))
        try:
            want_progress = args.progress if args.progress is not None else sys.stderr.isatty()
            bar = ProgressBar(sys.stderr, store.count()) if want_progress else None
            summary = export_batches(store.batches(), key, config, progress=bar)
        finally:
            store.close()
    except ExportError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    for line in summary.lines():
        print(line)
    if summary.out is None:
        print(f"{prog}: no batch could be exported", file=sys.stderr)
        return 1
    return 0


def load_key(path: str | os.PathLike[str]) -> X25519PrivateKey:
    """The dataset private key; raises :class:`DatasetKeyError` with the reason."""
    try:
        return load_dataset_private_key(path)
    except KeyFileError as exc:
        raise DatasetKeyError(str(exc)) from exc


class ProgressBar:
    """A one-line progress bar redrawn in place (``\\r``) on a text stream.

    Redraws at most every ``interval`` seconds of the injected ``clock`` and
    once more on ``close``. ``total`` (batches) may be unknown.
    """

    WIDTH = 30

    def __init__(
        self,
        stream: IO[str],
        total: int | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
    ) -> None:
        self._stream = stream
        self._total = total
        self._clock = clock
        self._interval = interval
        self._start = clock()
        self._last_draw: float | None = None
        self._state = (0, 0)

    def update(self, batches: int, sealed_bytes: int) -> None:
        self._state = (batches, sealed_bytes)
        now = self._clock()
        if self._last_draw is None or now - self._last_draw >= self._interval:
            self._draw(now)

    def close(self) -> None:
        self._draw(self._clock())
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        self._last_draw = now
        batches, sealed = self._state
        elapsed = now - self._start
        rate = f"{sealed / 1e6 / elapsed:.1f} MB/s" if elapsed > 0 else "- MB/s"
        if self._total:
            done = min(batches, self._total)
            filled = self.WIDTH * done // self._total
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            head = f"[{bar}] {done}/{self._total} batches"
        else:
            head = f"{batches} batches"
        self._stream.write(f"\r{head}  {sealed / 1e6:.1f} MB  {rate}")
        self._stream.flush()


# ---------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2, one line
        self.exit(2, f"{self.prog}: {message}\n")


def _parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Decrypt stored batches into a training dataset.")
    p.add_argument("--data", required=True, metavar="DIR", help="the collector's data directory")
    p.add_argument("--key", required=True, metavar="DATASET.key", help="dataset private key")
    p.add_argument("--out", required=True, metavar="OUT", help="new directory for the dataset")
    p.add_argument(
        "--idle-minutes",
        type=_positive,
        default=5.0,
        metavar="MIN",
        help="an idle stretch longer than this ends a session (default 5)",
    )
    p.add_argument(
        "--png-level",
        type=int,
        choices=range(10),
        default=1,
        metavar="0-9",
        help="PNG compression level of the frames (default 1: fast)",
    )
    p.add_argument(
        "--jobs",
        type=_count,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="threads compressing PNG frames, 0 for none (default: cores, at most 4)",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    return p


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value
