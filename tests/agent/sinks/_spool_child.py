"""A process that writes to a spool, for the crash and full-disk tests.

``python -m tests.agent.sinks._spool_child STATE_DIR forever``: put batches
one after another, printing each sequence number once ``put`` returned, until
killed.

``python -m tests.agent.sinks._spool_child STATE_DIR fill [FSIZE_LIMIT]``: the
same until a put fails; then print ``error <class> <reason>`` and exit. With
FSIZE_LIMIT, first limit the size of any file this process writes
(RLIMIT_FSIZE, SIGXFSZ ignored), the fallback for a full disk where mounting
a small tmpfs is not permitted.
"""

from __future__ import annotations

import sys

from agent.sinks.base import SinkError, SpoolFullError
from agent.sinks.spool import Spool

from ._build import T0_MS, make_sealed

BODY_BYTES = 16 * 1024


def main(argv: list[str]) -> int:
    state_dir, mode = argv[0], argv[1]
    if mode == "fill" and len(argv) > 2:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = int(argv[2])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    spool = Spool(state_dir, budget_bytes=2**40)
    seq = spool.last_seq() + 1
    print("ready", flush=True)
    while True:
        sealed = make_sealed(seq, size=BODY_BYTES)
        try:
            spool.put(sealed, now_ms=T0_MS, hold_until_ms=T0_MS)
        except SinkError as exc:
            reason = exc.reason if isinstance(exc, SpoolFullError) else "-"
            print(f"error {type(exc).__name__} {reason} {exc}", flush=True)
            spool.close()
            return 0
        print(seq, flush=True)
        seq += 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
