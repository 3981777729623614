"""SQLite files of our own beside the workflow store, served by aiosqlite on a private loop.

Never duroxide's own file: an SQLite connection from this process on duroxide's file would
drop duroxide's POSIX locks when it closes (see ``_store_worker``). Our sidecars (the
transcript, the code versions) are separate files, so aiosqlite can serve them in-process.

aiosqlite needs an event loop, and the callers are engine worker threads and the notebook's
main thread (where an event loop may already run), so each sidecar runs one private loop in a
daemon thread, started at first use, and its synchronous methods submit coroutines to it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Coroutine
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from .._errors import RuntimeStateError

__all__ = ["SidecarDb"]

_log = logging.getLogger("pi_duroxide_nb.sidecar")
_T = TypeVar("_T")
TIMEOUT_S = 30.0


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is not a database or is corrupt (not a permission problem)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name:
        return name in ("SQLITE_NOTADB", "SQLITE_CORRUPT")
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def set_aside(path: str) -> str:
    """Rename a damaged SQLite file (and its -wal/-shm) to ``<path>.damaged-<UTC time>``; the new name."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = f"{path}.damaged-{stamp}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    return aside


class SidecarDb:
    """One aiosqlite connection to a file of ours, on a private event loop in a daemon thread."""

    schema: tuple[str, ...] = ()
    """Statements run once when the file is opened (``CREATE TABLE IF NOT EXISTS ...``)."""
    what: str = "sidecar"
    """What the file holds, for error messages and the thread's name."""
    lost: str = "what it held"
    """What a damaged file's loss means, for the warning when it is set aside."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        """Operations submitted to the loop and not finished: ``close`` waits for them."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._closed = False

    @property
    def path(self) -> str:
        """The SQLite file."""
        return self._path

    def _enter(self) -> asyncio.AbstractEventLoop:
        """The loop, opened at first use, with one more operation counted as running on it."""
        with self._lock:
            if self._closed:
                msg = f"The {self.what} store was closed with its runtime. Create a new WorkflowRuntime to read it."
                raise RuntimeStateError(msg)
            if self._loop is not None:
                self._busy += 1
                return self._loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name=f"pi_duroxide_nb-{self.what}", daemon=True)
            thread.start()
            try:
                self._conn = asyncio.run_coroutine_threadsafe(self._connect(), loop).result(TIMEOUT_S)
            except BaseException as exc:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=5)
                loop.close()
                if isinstance(exc, (OSError, sqlite3.Error)):
                    msg = (
                        f"Could not open the {self.what} file {self._path} ({type(exc).__name__}: {exc}). "
                        "It is kept beside the workflow store: make that folder writable, or open the "
                        "store from a writable folder."
                    )
                    raise RuntimeStateError(msg) from exc
                raise
            self._loop, self._thread = loop, thread
            self._busy += 1
            return loop

    async def _connect(self) -> Any:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        try:
            return await self._open()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
        # A damaged file of ours must not keep the runtime from starting: the workflow store is
        # separate and intact. Keep the damaged file for inspection and start a fresh one.
        aside = set_aside(self._path)
        _log.warning(
            "pi_duroxide_nb: the %s file %s was damaged (not a readable SQLite database); it was moved to %s "
            "and a new one started. The workflow store is not affected; lost: %s.",
            self.what,
            self._path,
            aside,
            self.lost,
        )
        return await self._open()

    async def _open(self) -> Any:
        import aiosqlite

        conn = await aiosqlite.connect(self._path, timeout=TIMEOUT_S)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            # Survives a killed process (the WAL is on disk); only a power cut may lose the last writes.
            await conn.execute("PRAGMA synchronous=NORMAL")
            for statement in self.schema:
                await conn.execute(statement)
            await conn.commit()
        except BaseException:
            await conn.close()
            raise
        return conn

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        try:
            loop = self._enter()
        except BaseException:
            coro.close()  # it will never run: close it so Python does not warn it was never awaited
            raise
        try:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(TIMEOUT_S)
        finally:
            with self._lock:
                self._busy -= 1
                self._idle.notify_all()

    def close(self) -> None:
        """Close the connection and stop the loop thread; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # A write in progress (an activity finishing during shutdown) completes first.
            self._idle.wait_for(lambda: self._busy == 0, timeout=TIMEOUT_S)
            loop, thread, conn = self._loop, self._thread, self._conn
            self._loop, self._thread, self._conn = None, None, None
        if loop is None or thread is None:
            return
        if conn is not None:
            try:
                asyncio.run_coroutine_threadsafe(conn.close(), loop).result(TIMEOUT_S)
            except Exception:  # closing is best effort; the data is committed already
                _log.debug("%s connection did not close cleanly", self.what, exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
