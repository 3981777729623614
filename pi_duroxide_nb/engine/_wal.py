"""Keeps duroxide's SQLite write-ahead log bounded, through the store reader's process."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from ._store import SqliteStoreReader

__all__ = ["WalKeeper"]

_log = logging.getLogger("pi_duroxide_nb.engine")


class WalKeeper:
    """Keep the write-ahead log bounded without stalling the engine's writers for long.

    duroxide's pollers keep read transactions open so often that SQLite's automatic
    checkpoints never get to restart the log, which grows to tens of MB (a passive
    checkpoint copies it back but cannot restart it either: measured, the log still
    reached 41 MB in 1 000 steps). Only a truncating checkpoint, which holds writers
    off while it waits for a moment with no readers, resets it. So: while work runs,
    once the log passes the limit, try one with a short wait (a try that finds no gap
    just comes back next round); when the engine goes idle, and at shutdown, truncate
    whatever is left, waiting longer. The store's reader process runs them: see
    ``_store_worker``. The wait is short, but duroxide's deferred transactions that
    meet it fail with "database is locked" and back off 200 ms or more, which is why the
    default limit is 16 MB rather than a few (measured in bench/bench_wal_limit.py).
    """

    def __init__(self, store: SqliteStoreReader, limit_bytes: int, busy_wait: timedelta) -> None:
        self._store = store
        self._limit = limit_bytes
        self._busy_wait = busy_wait

    def tend(self, *, quiet: bool, force: bool = False) -> None:
        """One round: truncate when ``quiet`` (idle or shutting down) or past the limit."""
        try:
            size = os.path.getsize(self._store.path + "-wal")
        except OSError:
            return
        if size == 0 or (not (quiet or force) and size <= self._limit):
            return
        try:
            self._store.checkpoint(truncate=True, timeout=2.0 if quiet else self._busy_wait.total_seconds())
        except Exception as exc:  # busy or gone: the next round tries again
            _log.debug("WAL checkpoint skipped: %s", exc)
