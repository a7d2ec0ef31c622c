"""Where finished batches go: seal, spool, ledger, upload.

The data flow is the module list, in order::

    base      the Sink protocol and the exception tree (SinkError and below)
    sealing   SealingSink: seal each batch to the dataset key, spool it
    spool     Spool: sealed batches on disk (SQLite, spool/v1/) until acknowledged;
              discard, dead letters, quarantine, erasure requests
    ledger    Ledger: every batch ever spooled and what became of it (30 days)
    upload    Uploader: signed POSTs to the collector, retry rules, upload conditions
    memory    MemorySink, for tests and benchmarks
    directory DirectorySink, plaintext files for development only

Importing this package imports none of them; each module's docstring states
its public API, its thread-safety and, for stores, what survives a crash.
"""
