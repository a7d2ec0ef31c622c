"""Where the collector keeps everything, behind one narrow protocol per aggregate.

- :mod:`collector.store.records`: the frozen records every store speaks in;
- :mod:`collector.store.protocols`: what a store must do and guarantee, one
  Protocol per aggregate (devices, admins, nonces, batches, policies,
  exemptions, audit) and :class:`~collector.store.protocols.Storage`, all
  of them together;
- :mod:`collector.store.sqlite`: the embedded backend (SQLite metadata,
  sealed bytes in :mod:`collector.blobs` segments).

A further backend is a new subpackage implementing the same protocols.
"""
