"""Replay protection in SQLite: claimed nonces, checked in memory, persisted by the writer.

A claim is answered from memory at once; the writer persists it with its
next group (or within ``NONCE_FLUSH_SECONDS`` when idle), so a batch
upload's nonce is durable before the batch is acknowledged. The engine
loads the table at start and prunes expired rows.
"""

from __future__ import annotations

import heapq

from collector.store.sqlite.engine import SQLiteEngine

#: How often (in the callers' clock) expired nonces are deleted from the table.
_NONCE_PRUNE_MS = 60_000


class SQLiteNonces(SQLiteEngine):
    """:class:`collector.store.protocols.NonceStore` on the shared engine."""

    def claim_nonce(self, device_id: str, nonce: str, expires_ms: int, now_ms: int) -> bool:
        key = (device_id, nonce)
        with self._nonce_lock:
            heap = self._nonce_heap
            while heap and heap[0][0] < now_ms:
                expired, old_device, old_nonce = heapq.heappop(heap)
                if self._nonces.get((old_device, old_nonce)) == expired:
                    del self._nonces[(old_device, old_nonce)]
            held = self._nonces.get(key)
            if held is not None and held >= now_ms:
                return False
            self._nonces[key] = expires_ms
            heapq.heappush(heap, (expires_ms, device_id, nonce))
            if now_ms - self._nonce_pruned_ms >= _NONCE_PRUNE_MS:
                self._nonce_pruned_ms = now_ms
                self._prune_before = now_ms
            # Persisted by the writer's next group: a batch upload of this
            # request is written in that group or a later one, so the nonce is
            # durable before the batch is acknowledged. Other requests do not
            # wait; an idle writer flushes within NONCE_FLUSH_SECONDS.
            self._pending_nonces.append((device_id, nonce, expires_ms))
        return True
