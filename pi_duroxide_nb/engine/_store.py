"""Reads the SQLite store's rows directly: full history payloads and instance states.

The engine's client drops some payloads (KV, custom status, continue-as-new, syscalls) and
reports no timestamps on SQLite, so history and listings read the tables. They are read in
a child process (see ``_store_worker``): an SQLite connection inside the kernel's process
breaks the engine's locking. Async methods wait in a thread, so the event loop stays free.
Nothing here writes, except the WAL checkpoint.
"""

from __future__ import annotations

import itertools
import json
import select
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._errors import EngineError
from ..models import HistoryEvent, WorkflowState, WorkflowStatus
from ._json import loads_lenient

__all__ = ["SqliteStoreReader", "StoreReader", "history_event_from_row"]

REQUEST_TIMEOUT = 30.0
"""The longest one read of the store may take before the reader is stopped."""
_PAYLOAD_FIELDS = ("input", "result", "output", "data")
_COMMON_FIELDS = {"event_id", "source_event_id", "instance_id", "execution_id", "timestamp_ms", "type", "name"}


def _from_ms(ms: Any) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)


def _error_text(details: Any) -> str | None:
    if details is None:
        return None
    if isinstance(details, dict) and len(details) == 1:
        inner = next(iter(details.values()))
        if isinstance(inner, dict):
            message = inner.get("message") or ""
            kind = inner.get("kind")
            if isinstance(kind, dict) and "Cancelled" in kind:
                reason = (kind["Cancelled"] or {}).get("reason", "")
                return f"canceled: {reason}" if reason else "canceled"
            return str(message) if message else json.dumps(inner)
    return details if isinstance(details, str) else json.dumps(details)


def history_event_from_row(execution_id: int, event_data: str) -> HistoryEvent:
    """Build a ``HistoryEvent`` from one stored ``history.event_data`` row."""
    raw: dict[str, Any] = json.loads(event_data)
    kind = str(raw.get("type"))
    fields: dict[str, Any] = {f: loads_lenient(raw[f]) for f in _PAYLOAD_FIELDS if raw.get(f) is not None}
    details = {k: v for k, v in raw.items() if k not in _COMMON_FIELDS and k not in _PAYLOAD_FIELDS}
    error = None
    if "details" in details:
        error = _error_text(details.pop("details"))
    elif kind.endswith("Failed") and "error" in raw:
        error = str(raw["error"])
    return HistoryEvent(
        instance_id=str(raw.get("instance_id", "")),
        execution_id=int(raw.get("execution_id", execution_id)),
        event_id=int(raw["event_id"]),
        kind=kind,
        source_event_id=raw.get("source_event_id"),
        timestamp=_from_ms(raw.get("timestamp_ms")) or datetime.fromtimestamp(0, tz=timezone.utc),
        name=raw.get("name"),
        error=error,
        details=details,
        **fields,
    )


_STATE_SQL = """
SELECT i.instance_id, i.orchestration_name, i.orchestration_version, i.current_execution_id,
       i.parent_instance_id, i.custom_status, e.status, e.output,
       (SELECT json_extract(h.event_data, '$.timestamp_ms') FROM history h
         WHERE h.instance_id = i.instance_id ORDER BY h.execution_id, h.event_id LIMIT 1),
       (SELECT json_extract(h.event_data, '$.timestamp_ms') FROM history h
         WHERE h.instance_id = i.instance_id ORDER BY h.execution_id DESC, h.event_id DESC LIMIT 1),
       i.created_at
FROM instances i
LEFT JOIN executions e ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id
"""


_STATUS_SQL = (
    "CASE WHEN e.status = 'Failed' AND (e.output = 'canceled' OR e.output LIKE 'canceled: %') "
    "THEN 'Terminated' ELSE COALESCE(e.status, 'Pending') END"
)
"""An instance's status; a cancelled one (the engine's ``Failed``, ``canceled: <reason>``) reads as ``Terminated``."""


def is_cancel_error(error: str | None) -> bool:
    """True for the error text the engine gives a cancelled instance."""
    return error is not None and (error == "canceled" or error.startswith("canceled: "))


def _state_sql(instance_id: str | None, name: str | None, status: str | None) -> tuple[str, list[Any]]:
    """``_STATE_SQL`` filtered by id, workflow name and status, newest first."""
    where, args = [], []
    for clause, value in (
        ("i.instance_id = ?", instance_id),
        ("i.orchestration_name = ?", name),
        (f"{_STATUS_SQL} = ?", status),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    return _STATE_SQL + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY i.rowid DESC", args


@runtime_checkable
class StoreReader(Protocol):
    """The reads ``WorkflowRuntime`` makes of a store, whatever the backend.

    ``SqliteStoreReader`` reads a SQLite store's tables in a child process; ``ClientStoreReader``
    reads a PostgreSQL store through duroxide's client. Methods a backend cannot serve say so
    (``history_rows`` and ``kv`` on PostgreSQL raise ``RuntimeStateError``) or do nothing
    (``nudge``, ``set_aside_activities``).
    """

    @property
    def path(self) -> str | None: ...
    def states(
        self, *, instance_id: str | None = None, name: str | None = None, status: str | None = None
    ) -> list[WorkflowState]: ...
    def states_page(
        self, *, name: str | None = None, status: str | None = None, limit: int | None = 50, offset: int = 0
    ) -> list[WorkflowState]: ...
    def status_counts(self, *, name: str | None = None) -> dict[str, int]: ...
    def exists(self, instance_id: str) -> bool: ...
    def history(self, instance_id: str, execution_id: int | None = None) -> list[HistoryEvent]: ...
    def history_rows(self, instance_id: str, execution_id: int | None = None) -> tuple[int, list[str]] | None: ...
    def executions(self, instance_id: str) -> list[int]: ...
    def kv(self, instance_id: str) -> dict[str, Any]: ...
    def unfinished(self) -> list[tuple[str, str, str]]: ...
    def set_aside_activities(self) -> dict[str, set[str]]: ...
    def nudge(self, *, instances: Sequence[str] = (), activities: Sequence[str] = ()) -> int: ...
    def remember_queued(self, state: WorkflowState) -> None: ...
    def forget(self, instance_ids: Sequence[str]) -> None: ...
    def may_appear(self, instance_id: str, within: float) -> bool: ...
    def close(self) -> None: ...


class SqliteStoreReader:
    """Read-only access to a duroxide SQLite store (the ``StoreReader`` of SQLite stores)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._ids = itertools.count(1)

    def _request(self, payload: dict[str, Any], timeout: float | None = None) -> list[list[Any]]:
        """Send one request and wait for its reply, for at most ``timeout`` s (``REQUEST_TIMEOUT``).

        A reader that does not answer in time is killed (the next request starts a fresh one),
        so a stuck read never hangs the kernel.
        """
        limit = REQUEST_TIMEOUT if timeout is None else timeout
        with self._lock:
            for attempt in (1, 2):
                proc = self._process()
                payload["id"] = next(self._ids)
                try:
                    assert proc.stdin is not None and proc.stdout is not None
                    proc.stdin.write(json.dumps(payload) + "\n")
                    proc.stdin.flush()
                    ready, _, _ = select.select([proc.stdout], [], [], limit)
                    if not ready:
                        proc.kill()
                        proc.wait()
                        self._proc = None
                        msg = (
                            f"Reading the workflow store {self._path} took longer than {limit:g} s; the read was "
                            "stopped. Another program may hold the database locked; try again, or check the file."
                        )
                        raise EngineError(msg)
                    line = proc.stdout.readline()
                except (BrokenPipeError, OSError):
                    line = ""
                if line:
                    break
                self._proc = None  # the reader died; start a fresh one once
                if attempt == 2:
                    msg = (
                        f"The store reader process for {self._path} exited unexpectedly; "
                        "check that the file is readable."
                    )
                    raise EngineError(msg)
        reply = json.loads(line)
        if "error" in reply:
            msg = f"Reading the workflow store {self._path} failed: {reply['error']}"
            raise EngineError(msg)
        rows: list[list[Any]] = reply["rows"]
        return rows

    def _process(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            worker = Path(__file__).with_name("_store_worker.py")
            self._proc = subprocess.Popen(
                # -I -S: isolated, no site-packages (it needs the standard library only): 1.2 MiB less.
                [sys.executable, "-I", "-S", str(worker), self._path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
                # Its own session: a kernel interrupt (SIGINT to the process group) is not for it.
                start_new_session=True,
            )
        return self._proc

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def remember_queued(self, state: WorkflowState) -> None:
        """Nothing to remember: a queued start is in the store's queue table."""

    def forget(self, instance_ids: Sequence[str]) -> None:
        """Nothing to forget (see ``remember_queued``)."""

    def may_appear(self, instance_id: str, within: float) -> bool:
        """False: every start, from any process, is visible in the queue table at once."""
        return False

    def query(self, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> list[list[Any]]:
        """Run one read-only query in the reader process."""
        return self._request({"sql": sql, "args": list(args)})

    def checkpoint(self, *, truncate: bool = True, timeout: float = 2.0) -> list[int]:
        """Fold the write-ahead log into the database; with ``truncate``, also shrink it to zero.

        Returns SQLite's ``[busy, log_frames, checkpointed_frames]`` (``busy`` is 1 when the
        truncation could not finish within ``timeout`` s). A truncating checkpoint holds the
        engine's writers off while it waits for its readers, so keep ``timeout`` short while
        work runs.
        """
        mode = "TRUNCATE" if truncate else "PASSIVE"
        rows = self._request({"op": "checkpoint", "mode": mode, "timeout": timeout}, timeout + 5.0)
        return [int(v) for v in rows[0]]

    def tune_planner(self) -> bool:
        """Keep the engine's queue fast under a backlog (see ``_store_worker._tune``); True if written now."""
        return bool(self._request({"op": "tune"}, 10.0)[0][0])

    def integrity(self, timeout: float) -> list[str]:
        """SQLite's ``quick_check`` of the file: ``["ok"]`` when sound, else the problems found."""
        return [str(r[0]) for r in self._request({"op": "check"}, timeout)]

    def nudge(self, *, instances: Sequence[str] = (), activities: Sequence[str] = ()) -> int:
        """Make work the engine set aside with a backoff visible now (see ``_store_worker``)."""
        if not instances and not activities:
            return 0
        rows = self._request({"op": "nudge", "instances": list(instances), "activities": list(activities)}, 10.0)
        return int(rows[0][0])

    def unfinished(self) -> list[tuple[str, str, str]]:
        """``(name, version, instance_id)`` of every instance that has not finished, queued starts included."""
        rows = self.query(
            "SELECT i.orchestration_name, i.orchestration_version, i.instance_id FROM instances i "
            "JOIN executions e ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id "
            "WHERE e.status NOT IN ('Completed', 'Failed') "
            "UNION SELECT json_extract(q.work_item, '$.StartOrchestration.orchestration'), "
            "COALESCE(json_extract(q.work_item, '$.StartOrchestration.version'), ''), q.instance_id "
            "FROM orchestrator_queue q WHERE json_extract(q.work_item, '$.StartOrchestration') IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.instance_id = q.instance_id)"
        )
        return [(str(n), str(v), str(i)) for n, v, i in rows]

    def set_aside_activities(self) -> dict[str, set[str]]:
        """Activity calls the engine set aside to retry later (no code or host for them), by instance."""
        rows = self.query(
            "SELECT instance_id, json_extract(work_item, '$.ActivityExecute.name') FROM worker_queue "
            "WHERE lock_token IS NULL AND visible_at > CAST(strftime('%s', 'now') AS INTEGER) * 1000"
        )
        found: dict[str, set[str]] = {}
        for iid, name in rows:
            found.setdefault(str(iid), set()).add(str(name))
        return found

    def close(self) -> None:
        """Stop the reader process."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        proc.stdout.close()

    def history(self, instance_id: str, execution_id: int | None = None) -> list[HistoryEvent]:
        """Every event of one execution (the current one by default), in order, payloads parsed."""
        found = self.history_rows(instance_id, execution_id)
        if found is None:
            return []
        execution, texts = found
        return [history_event_from_row(execution, text) for text in texts]

    def history_rows(self, instance_id: str, execution_id: int | None = None) -> tuple[int, list[str]] | None:
        """The stored event texts of one execution (the current one by default), or None if unknown."""
        if execution_id is None:
            found = self.query("SELECT current_execution_id FROM instances WHERE instance_id = ?", (instance_id,))
            if not found:
                return None
            execution_id = int(found[0][0])
        rows = self.query(
            "SELECT event_data FROM history WHERE instance_id = ? AND execution_id = ? ORDER BY event_id",
            (instance_id, execution_id),
        )
        return (execution_id, [str(r[0]) for r in rows]) if rows else None

    def history_count(self, instance_id: str) -> int:
        """How many events the current execution of an instance has."""
        rows = self.query(
            "SELECT COUNT(*) FROM history h JOIN instances i ON i.instance_id = h.instance_id "
            "AND i.current_execution_id = h.execution_id WHERE h.instance_id = ?",
            (instance_id,),
        )
        return int(rows[0][0]) if rows else 0

    def executions(self, instance_id: str) -> list[int]:
        """The execution ids of an instance, oldest first."""
        rows = self.query(
            "SELECT execution_id FROM executions WHERE instance_id = ? ORDER BY execution_id", (instance_id,)
        )
        return [int(r[0]) for r in rows]

    def states(
        self, *, instance_id: str | None = None, name: str | None = None, status: str | None = None
    ) -> list[WorkflowState]:
        """Instance states, newest first, filtered by id, workflow name and status.

        Instances whose start is queued but not yet picked up are reported as ``Pending``.
        """
        # One statement even for one instance: read in two (tables, then queue), a start the
        # engine moved in between was in neither, and a just-started instance was "not found".
        return self.states_page(instance_id=instance_id, name=name, status=status, limit=None)

    @staticmethod
    def _state(row: Any) -> WorkflowState:
        (iid, name, version, exec_id, parent, custom, status, output, first_ms, last_ms, created_text) = row
        status_value = WorkflowStatus(status) if status else WorkflowStatus.PENDING
        error = None
        out: Any = None
        if status_value is WorkflowStatus.FAILED:
            error = output
            if is_cancel_error(output):
                status_value = WorkflowStatus.TERMINATED
        elif output is not None:
            out = loads_lenient(output)
        created = _from_ms(first_ms)
        if created is None and created_text:
            created = datetime.fromisoformat(str(created_text)).replace(tzinfo=timezone.utc)
        return WorkflowState(
            instance_id=iid,
            name=name,
            version=version,
            status=status_value,
            output=out,
            error=error,
            custom_status=custom,
            created_at=created,
            updated_at=_from_ms(last_ms) or created,
            parent_instance_id=parent,
            execution_id=int(exec_id),
        )

    def exists(self, instance_id: str) -> bool:
        """True if the instance exists or its start is queued."""
        rows = self.query(
            "SELECT 1 FROM instances WHERE instance_id = ? UNION ALL "
            "SELECT 1 FROM orchestrator_queue WHERE instance_id = ? LIMIT 1",
            (instance_id, instance_id),
        )
        return bool(rows)

    def kv(self, instance_id: str) -> dict[str, Any]:
        """The KV entries of an instance, values parsed from JSON."""
        rows = self.query("SELECT key, value FROM kv_store WHERE instance_id = ? ORDER BY key", (instance_id,))
        return {k: loads_lenient(v) for k, v in rows}

    # --- dashboard-scale reads: one query per page, never one per instance ------------------

    def states_page(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        limit: int | None = 50,
        offset: int = 0,
        instance_id: str | None = None,
    ) -> list[WorkflowState]:
        """One page of instance states, newest first, filtered by workflow name and status.

        Queued starts (``Pending``, no instance row yet) come first. One statement, so one
        snapshot: read in two, a start the engine moved from the queue to the tables in between
        was in neither read, and the page came back short.
        """
        sql, args = _state_sql(instance_id, name, status)
        sql = sql[: sql.rindex(" ORDER BY")]
        queued_sql = (
            "SELECT q.instance_id, json_extract(q.work_item, '$.StartOrchestration.orchestration'), "
            "COALESCE(json_extract(q.work_item, '$.StartOrchestration.version'), ''), "
            "COALESCE(json_extract(q.work_item, '$.StartOrchestration.execution_id'), 1), "
            "json_extract(q.work_item, '$.StartOrchestration.parent_instance'), NULL, 'Pending', NULL, "
            "q.visible_at, q.visible_at, NULL, 0 AS part, q.id AS ord FROM orchestrator_queue q "
            "WHERE json_extract(q.work_item, '$.StartOrchestration') IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.instance_id = q.instance_id)"
        )
        queued_args: list[Any] = []
        if name is not None:
            queued_sql += " AND json_extract(q.work_item, '$.StartOrchestration.orchestration') = ?"
            queued_args.append(name)
        if instance_id is not None:
            queued_sql += " AND q.instance_id = ?"
            queued_args.append(instance_id)
        select_rows = sql.replace("\nFROM instances i", ", 1 AS part, i.rowid AS ord\nFROM instances i", 1)
        parts = [f"SELECT * FROM ({select_rows})"]
        all_args: list[Any] = list(args)
        if status in (None, WorkflowStatus.PENDING.value):
            parts.insert(0, f"SELECT * FROM ({queued_sql})")
            all_args = queued_args + all_args
        # Newest first by start time (the first event's), then by arrival: the engine writes an
        # instance's row when it first runs it, which is not always the order they were started in.
        full = " UNION ALL ".join(parts) + " ORDER BY 12, 9 DESC, 13 DESC LIMIT ? OFFSET ?"
        rows = self.query(full, [*all_args, -1 if limit is None else limit, offset])
        return [self._state(row[:11]) for row in rows]

    def status_counts(self, *, name: str | None = None) -> dict[str, int]:
        """How many instances are in each status (queued starts count as ``Pending``).

        One statement, so one snapshot: counted in two queries, an instance the engine moves
        from the queue to the tables in between would be counted in neither.
        """
        instances = (
            f"SELECT {_STATUS_SQL} AS status FROM instances i "
            "LEFT JOIN executions e ON e.instance_id = i.instance_id AND e.execution_id = i.current_execution_id"
        )
        queued = (
            "SELECT DISTINCT q.instance_id, 'Pending' AS status FROM orchestrator_queue q "
            "WHERE json_extract(q.work_item, '$.StartOrchestration') IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.instance_id = q.instance_id)"
        )
        args: list[Any] = []
        if name is not None:
            instances += " WHERE i.orchestration_name = ?"
            queued += " AND json_extract(q.work_item, '$.StartOrchestration.orchestration') = ?"
            args = [name, name]
        sql = f"SELECT status, COUNT(*) FROM ({instances} UNION ALL SELECT status FROM ({queued})) GROUP BY status"
        return {str(s): int(n) for s, n in self.query(sql, args)}
