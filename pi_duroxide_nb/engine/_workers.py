"""Worker presence: each worker process announces itself beside the store, the notebook lists the live ones.

A worker (``python -m pi_duroxide_nb worker``) writes one row every ``interval`` seconds to the
``workers`` table of the code sidecar (``<db>.code.sqlite``): its id, host, pid, when it
started and was last seen, its concurrency and the workflows it serves. A graceful shutdown
deletes the row; a killed worker's row stops being refreshed and drops out of the live view
after ``within`` seconds.

For a SQLite store the sidecar sits beside the store file, so every process on that host sees
every worker. A PostgreSQL store keeps the rows in a table of ours in the same database
(``pi_duroxide_nb_workers``, through psycopg), so a notebook on one host lists the workers of
every host; liveness is judged by the database's clock, so hosts' clocks need not agree.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from ._codestore import PgTables, psycopg_for
from ._sidecar import SidecarDb

__all__ = [
    "PostgresWorkerTable",
    "WorkerBeacon",
    "WorkerInfo",
    "WorkerPresence",
    "WorkerTable",
    "new_worker_id",
    "worker_table_for",
]

_log = logging.getLogger("pi_duroxide_nb.worker")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS workers ("
    " worker_id TEXT PRIMARY KEY, info TEXT NOT NULL, last_seen_us INTEGER NOT NULL)",
)


class WorkerInfo(BaseModel):
    """A worker process serving a store, as it last announced itself.

    Example:
        for w in rt.workers():
            print(w.worker_id, w.host, w.pid, w.workflows)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker_id: str
    """Unique per worker process: ``host-pid-random``."""
    host: str
    """The machine it runs on."""
    pid: int
    """Its process id on that machine."""
    started_at: datetime
    """When it started."""
    last_seen: datetime
    """Its last heartbeat."""
    concurrency: int
    """Activities (and workflow steps) it runs at once."""
    workflows: tuple[str, ...] = ()
    """The workflows it serves, as ``name@version``."""
    activities: tuple[str, ...] = ()
    """The activities it serves."""


def new_worker_id() -> str:
    """A worker id unique across hosts and restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


class WorkerTable(SidecarDb):
    """The ``workers`` table of one store's code sidecar."""

    schema = _SCHEMA
    what = "worker presence"
    lost = "the worker announcements (running workers announce themselves again within a second)"

    def beat(self, info: WorkerInfo) -> None:
        """Write (or refresh) ``info``'s row with its ``last_seen``."""
        payload = info.model_dump_json()
        seen = _us(info.last_seen)

        async def write() -> None:
            await self._conn.execute(
                "INSERT OR REPLACE INTO workers (worker_id, info, last_seen_us) VALUES (?, ?, ?)",
                (info.worker_id, payload, seen),
            )
            await self._conn.commit()

        self._run(write())

    def remove(self, worker_id: str) -> None:
        """Delete a worker's row (it shut down)."""

        async def write() -> None:
            await self._conn.execute("DELETE FROM workers WHERE worker_id = ?", (worker_id,))
            await self._conn.commit()

        self._run(write())

    def live(self, within: timedelta) -> list[WorkerInfo]:
        """Workers seen within ``within`` of now, oldest first; rows of long-dead workers are dropped."""
        now = datetime.now(timezone.utc)
        since = _us(now - within)
        forget = _us(now - max(within * 10, timedelta(hours=1)))

        async def read() -> list[Any]:
            await self._conn.execute("DELETE FROM workers WHERE last_seen_us < ?", (forget,))
            await self._conn.commit()
            cursor = await self._conn.execute(
                "SELECT info FROM workers WHERE last_seen_us >= ? ORDER BY worker_id", (since,)
            )
            rows = await cursor.fetchall()
            await cursor.close()
            return list(rows)

        found = [WorkerInfo.model_validate(json.loads(row[0])) for row in self._run(read())]
        return sorted(found, key=lambda w: (w.started_at, w.worker_id))


_PG_WORKERS = "pi_duroxide_nb_workers"
_PG_NOW_US = "(extract(epoch from clock_timestamp()) * 1000000)::bigint"


class PostgresWorkerTable(PgTables):
    """The workers of a PostgreSQL store, in a table of ours in the same database.

    Every host sharing the database writes and reads it, so each notebook lists all workers.
    ``last_seen_us`` is the database's clock at each heartbeat, and ``live`` compares with that
    same clock: a host whose clock is off is still listed right.
    """

    what = "worker list"
    tables = (
        f"CREATE TABLE IF NOT EXISTS {_PG_WORKERS} (worker_id TEXT PRIMARY KEY, info TEXT NOT NULL, "
        "last_seen_us BIGINT NOT NULL)",
    )

    def beat(self, info: WorkerInfo) -> None:
        """Write (or refresh) ``info``'s row, seen now by the database's clock."""
        with self._lock:
            self._connection().execute(
                f"INSERT INTO {_PG_WORKERS} (worker_id, info, last_seen_us) VALUES (%s, %s, {_PG_NOW_US}) "
                "ON CONFLICT (worker_id) DO UPDATE SET info = EXCLUDED.info, last_seen_us = EXCLUDED.last_seen_us",
                (info.worker_id, info.model_dump_json()),
            )

    def remove(self, worker_id: str) -> None:
        """Delete a worker's row (it shut down)."""
        with self._lock:
            self._connection().execute(f"DELETE FROM {_PG_WORKERS} WHERE worker_id = %s", (worker_id,))

    def live(self, within: timedelta) -> list[WorkerInfo]:
        """Workers seen within ``within`` of the database's now; rows of long-dead workers are dropped."""
        since = int(within.total_seconds() * 1_000_000)
        forget = int(max(within * 10, timedelta(hours=1)).total_seconds() * 1_000_000)
        with self._lock:
            conn = self._connection()
            conn.execute(f"DELETE FROM {_PG_WORKERS} WHERE last_seen_us < {_PG_NOW_US} - %s", (forget,))
            rows = conn.execute(
                f"SELECT info FROM {_PG_WORKERS} WHERE last_seen_us >= {_PG_NOW_US} - %s ORDER BY worker_id",
                (since,),
            ).fetchall()
        found = [WorkerInfo.model_validate(json.loads(row[0])) for row in rows]
        return sorted(found, key=lambda w: (w.started_at, w.worker_id))


class WorkerPresence(Protocol):
    """Where workers announce themselves: ``WorkerTable`` (SQLite sidecar) or ``PostgresWorkerTable``."""

    def beat(self, info: WorkerInfo) -> None: ...
    def remove(self, worker_id: str) -> None: ...
    def live(self, within: timedelta) -> list[WorkerInfo]: ...
    def close(self) -> None: ...


def worker_table_for(db: str, sidecar_path: str) -> WorkerPresence:
    """The worker list of a store: the database's own table for PostgreSQL (with psycopg), else the sidecar."""
    if psycopg_for(db, "workers announce themselves in a local file, so only this host's are listed"):
        return PostgresWorkerTable(db)
    return WorkerTable(sidecar_path)


class WorkerBeacon:
    """Keeps one worker's row fresh from a daemon thread until ``stop()``."""

    def __init__(self, table: WorkerPresence, info: WorkerInfo, *, interval: float = 1.0) -> None:
        self._table = table
        self._info = info
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pi_duroxide_nb-worker-beacon", daemon=True)

    @property
    def info(self) -> WorkerInfo:
        """What the worker announces."""
        return self._info

    def start(self) -> WorkerBeacon:
        """Announce now, then every ``interval`` seconds."""
        self._beat()
        self._thread.start()
        return self

    def update(self, **fields: Any) -> None:
        """Change what the worker announces (e.g. the workflows it serves) from the next beat on."""
        self._info = self._info.model_copy(update=fields)

    def _beat(self) -> None:
        self._info = self._info.model_copy(update={"last_seen": datetime.now(timezone.utc)})
        self._table.beat(self._info)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except Exception:  # a busy sidecar must not stop the worker; the next beat retries
                _log.debug("heartbeat failed", exc_info=True)

    def stop(self) -> None:
        """Stop beating and delete the row."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._table.remove(self._info.worker_id)
