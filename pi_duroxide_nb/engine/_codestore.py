"""Code versions kept with the store, so a new kernel can rebuild what its instances started on.

Every workflow version a runtime can run is saved beside the store when the runtime starts and
whenever one is registered: its source, how it was defined (a ``%%workflow`` cell, a ``def`` in
a cell, a module function), the source of the notebook helpers it calls, the simple values and
modules it reads, its description and model names. A SQLite store keeps them in a sidecar file
of ours, ``<db>.code.sqlite`` (never in duroxide's own file, see ``_sidecar``); a PostgreSQL
store in a table of ours in the same database.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict

from .._errors import RuntimeStateError
from ._registry import CodeOrigin, WorkflowDefinition
from ._sidecar import SidecarDb

__all__ = ["CodeRecord", "CodeStore", "PostgresCodeStore", "code_path_for", "code_store_for"]

_log = logging.getLogger("pi_duroxide_nb")


class CodeRecord(BaseModel):
    """One workflow version as kept with the store: what the instances on it ran.

    Example:
        record = rt.code_version("triage", state.version)
        print(record.source)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    """The workflow's name."""
    version: str
    """The version instances started on."""
    code_hash: str
    """The code version of the function (equal to ``version`` unless it was given by hand)."""
    kind: str
    """``"cell"``, ``"module"`` or ``"closure"`` (see ``CodeOrigin``)."""
    function: str
    """The function's name (its qualified name for a module function)."""
    module: str | None = None
    """The module, for a module function."""
    source: str | None = None
    """The source as written (a ``%%workflow`` cell's body, or the ``def``)."""
    rebuild: str | None = None
    """Python source that defines the function, for cell-defined code."""
    helpers: dict[str, str] = {}
    """Sources of the notebook helper functions it calls, by name."""
    constants: dict[str, str] = {}
    """``repr`` of the simple global values it reads, by name."""
    imports: dict[str, str] = {}
    """Modules it refers to (global name -> module), and ``name -> "module:qualname"`` for imported objects."""
    description: str | None = None
    """The workflow's description."""
    input_model: str | None = None
    """The input model's qualified name, if any."""
    output_model: str | None = None
    """The output model's qualified name, if any."""
    saved_at: datetime
    """When it was first kept."""


def _model_name(model: Any) -> str | None:
    return None if model is None else f"{model.__module__}.{model.__qualname__}"


def record_for(definition: WorkflowDefinition) -> CodeRecord:
    """The record that keeps ``definition``."""
    origin = definition.origin or CodeOrigin(kind="closure", function=getattr(definition.fn, "__name__", "?"))
    return CodeRecord(
        name=definition.name,
        version=definition.version,
        code_hash=definition.code_hash or definition.version,
        kind=origin.kind,
        function=origin.function,
        module=origin.module,
        source=definition.source,
        rebuild=origin.rebuild,
        helpers=dict(origin.helpers),
        constants=dict(origin.constants),
        imports=dict(origin.imports),
        description=definition.description,
        input_model=_model_name(definition.input_model),
        output_model=_model_name(definition.output_model),
        saved_at=datetime.now(timezone.utc),
    )


def code_path_for(transcript_path: str) -> str:
    """The code sidecar beside a transcript sidecar (both are named after the store)."""
    base = transcript_path.removesuffix(".transcript.sqlite")
    return base + ".code.sqlite"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS code_versions ("
    " name TEXT NOT NULL, version TEXT NOT NULL, code_hash TEXT NOT NULL, record TEXT NOT NULL,"
    " PRIMARY KEY (name, version))",
    "CREATE TABLE IF NOT EXISTS event_schemas ("
    " instance_id TEXT NOT NULL, event TEXT NOT NULL, model TEXT NOT NULL, schema TEXT NOT NULL,"
    " PRIMARY KEY (instance_id, event))",
)


class CodeStore(SidecarDb):
    """The code versions of one workflow store."""

    schema = _SCHEMA
    what = "code versions"
    lost = (
        "the code versions kept for unfinished instances (one whose workflow is not registered shows "
        '"code missing" until the cell defining it runs again) and the schemas of typed event waits'
    )

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._saved: dict[tuple[str, str], str] = {}

    def save(self, definitions: list[WorkflowDefinition]) -> int:
        """Keep these versions (those already kept with the same code are skipped); returns how many were written.

        A version number given by hand and registered again with other code is replaced: the
        store keeps what instances on that version now replay.
        """
        todo = [d for d in definitions if self._saved.get((d.name, d.version)) != (d.code_hash or d.version)]
        if not todo:
            return 0
        records = [record_for(d) for d in todo]

        async def write() -> int:
            written = 0
            for r in records:
                cursor = await self._conn.execute(
                    "SELECT code_hash FROM code_versions WHERE name = ? AND version = ?", (r.name, r.version)
                )
                row = await cursor.fetchone()
                await cursor.close()
                if row is not None and row[0] == r.code_hash:
                    continue
                await self._conn.execute(
                    "INSERT OR REPLACE INTO code_versions (name, version, code_hash, record) VALUES (?, ?, ?, ?)",
                    (r.name, r.version, r.code_hash, r.model_dump_json()),
                )
                written += 1
            await self._conn.commit()
            return written

        written = self._run(write())
        for r in records:
            self._saved[(r.name, r.version)] = r.code_hash
        return written

    def get(self, name: str, version: str) -> CodeRecord | None:
        """The kept record of ``name@version``, or None."""

        async def read() -> Any:
            cursor = await self._conn.execute(
                "SELECT record FROM code_versions WHERE name = ? AND version = ?", (name, version)
            )
            row = await cursor.fetchone()
            await cursor.close()
            return row

        row = self._run(read())
        return None if row is None else CodeRecord.model_validate(json.loads(row[0]))

    def all(self) -> list[CodeRecord]:
        """Every kept record, by name then version."""

        async def read() -> list[Any]:
            cursor = await self._conn.execute("SELECT record FROM code_versions ORDER BY name, version")
            rows = await cursor.fetchall()
            await cursor.close()
            return list(rows)

        return [CodeRecord.model_validate(json.loads(row[0])) for row in self._run(read())]

    # --- the JSON Schema of typed event waits (see ``_events``) ----------------------------

    def save_event_schema(self, instance_id: str, event: str, schema: dict[str, Any], model: str) -> None:
        """Keep the schema ``instance_id`` waits for ``event`` with (the first one kept stays)."""

        async def write() -> None:
            await self._conn.execute(
                "INSERT OR IGNORE INTO event_schemas (instance_id, event, model, schema) VALUES (?, ?, ?, ?)",
                (instance_id, event, model, json.dumps(schema)),
            )
            await self._conn.commit()

        self._run(write())

    def event_schemas(self, instance_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """``event -> (model name, JSON Schema)`` kept for an instance."""

        async def read() -> list[Any]:
            cursor = await self._conn.execute(
                "SELECT event, model, schema FROM event_schemas WHERE instance_id = ?", (instance_id,)
            )
            rows = await cursor.fetchall()
            await cursor.close()
            return list(rows)

        return {str(e): (str(m), json.loads(s)) for e, m, s in self._run(read())}

    def forget_event_schemas(self, instance_ids: tuple[str, ...] | list[str]) -> None:
        """Drop the kept schemas of deleted instances."""
        if not instance_ids:
            return

        async def write() -> None:
            await self._conn.executemany(
                "DELETE FROM event_schemas WHERE instance_id = ?", [(i,) for i in instance_ids]
            )
            await self._conn.commit()

        self._run(write())


_PG_TABLE = "pi_duroxide_nb_code_versions"
_PG_EVENTS = "pi_duroxide_nb_event_schemas"
_PG_SCHEMA_LOCK = 0x7064_6E5F_7363_6D61  # "pdn_scma": serialises our CREATE TABLEs across processes


def psycopg_for(db: str, fallback: str) -> bool:
    """Whether ``db`` is a PostgreSQL URL whose tables of ours psycopg can reach.

    Without psycopg (the ``[postgres]`` extra) a PostgreSQL store falls back to a local file;
    the log says once what that ``fallback`` costs.
    """
    if not db.startswith(("postgres://", "postgresql://")):
        return False
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _log.warning(
            "pi_duroxide_nb: %s of %s: pip install 'pi_duroxide_nb[postgres]' to keep them in the database",
            fallback,
            db.split("@")[-1],
        )
        return False
    return True


class PgTables:
    """Tables of ours in a PostgreSQL store's database, over one psycopg connection.

    Subclasses name their ``tables`` (``CREATE TABLE IF NOT EXISTS`` statements), created on
    first use. Calls are short, so they run synchronously, one at a time under ``_lock``.
    """

    tables: tuple[str, ...] = ()
    what: str = "tables"
    """What the tables hold, for the error after ``close``."""

    def __init__(self, url: str) -> None:
        import psycopg  # the [postgres] extra; checked by the caller (``psycopg_for``)

        self._psycopg = psycopg
        self._url = url
        self._lock = threading.Lock()
        self._conn: Any = None
        self._closed = False

    def _connection(self) -> Any:
        if self._closed:
            msg = f"The {self.what} store was closed with its runtime. Create a new WorkflowRuntime to read it."
            raise RuntimeStateError(msg)
        if self._conn is None or self._conn.closed:
            self._conn = self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)
            # PostgreSQL's IF NOT EXISTS is not safe against a concurrent creator: the second one
            # fails with "duplicate key value violates unique constraint pg_type_typname_nsp_index"
            # (seen when two workers started at once). A transaction-scoped advisory lock makes
            # processes take turns; the later one then finds the tables.
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
                for statement in self.tables:
                    self._conn.execute(statement)
        return self._conn

    def close(self) -> None:
        """Close the connection; safe to call more than once."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class PostgresCodeStore(PgTables):
    """The code versions of a PostgreSQL store, in a table of ours in the same database.

    Every runtime and worker that shares the database sees them, so any of them can restore a
    version another kernel registered. Uses psycopg (``pip install 'pi_duroxide_nb[postgres]'``).
    """

    what = "code versions"
    tables = (
        f"CREATE TABLE IF NOT EXISTS {_PG_TABLE} (name TEXT NOT NULL, version TEXT NOT NULL, "
        "code_hash TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (name, version))",
        f"CREATE TABLE IF NOT EXISTS {_PG_EVENTS} (instance_id TEXT NOT NULL, event TEXT NOT NULL, "
        "model TEXT NOT NULL, schema TEXT NOT NULL, PRIMARY KEY (instance_id, event))",
    )

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._saved: dict[tuple[str, str], str] = {}

    @property
    def path(self) -> str:
        """Where the versions are kept: the table, in the store's database."""
        return f"{_PG_TABLE} in the store's database"

    def save_event_schema(self, instance_id: str, event: str, schema: dict[str, Any], model: str) -> None:
        """Keep the schema ``instance_id`` waits for ``event`` with (see ``CodeStore.save_event_schema``)."""
        with self._lock:
            self._connection().execute(
                f"INSERT INTO {_PG_EVENTS} (instance_id, event, model, schema) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (instance_id, event) DO NOTHING",
                (instance_id, event, model, json.dumps(schema)),
            )

    def event_schemas(self, instance_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """``event -> (model name, JSON Schema)`` kept for an instance."""
        with self._lock:
            rows = (
                self._connection()
                .execute(f"SELECT event, model, schema FROM {_PG_EVENTS} WHERE instance_id = %s", (instance_id,))
                .fetchall()
            )
        return {str(e): (str(m), json.loads(s)) for e, m, s in rows}

    def forget_event_schemas(self, instance_ids: tuple[str, ...] | list[str]) -> None:
        """Drop the kept schemas of deleted instances."""
        if not instance_ids:
            return
        with self._lock:
            self._connection().execute(f"DELETE FROM {_PG_EVENTS} WHERE instance_id = ANY(%s)", (list(instance_ids),))

    def save(self, definitions: list[WorkflowDefinition]) -> int:
        """Keep these versions (see ``CodeStore.save``)."""
        todo = [d for d in definitions if self._saved.get((d.name, d.version)) != (d.code_hash or d.version)]
        if not todo:
            return 0
        records = [record_for(d) for d in todo]
        written = 0
        with self._lock:
            conn = self._connection()
            for r in records:
                cursor = conn.execute(
                    f"INSERT INTO {_PG_TABLE} (name, version, code_hash, record) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (name, version) DO UPDATE "
                    "SET code_hash = EXCLUDED.code_hash, record = EXCLUDED.record "
                    f"WHERE {_PG_TABLE}.code_hash <> EXCLUDED.code_hash",
                    (r.name, r.version, r.code_hash, r.model_dump_json()),
                )
                written += cursor.rowcount
        for r in records:
            self._saved[(r.name, r.version)] = r.code_hash
        return written

    def get(self, name: str, version: str) -> CodeRecord | None:
        """The kept record of ``name@version``, or None."""
        with self._lock:
            row = (
                self._connection()
                .execute(f"SELECT record FROM {_PG_TABLE} WHERE name = %s AND version = %s", (name, version))
                .fetchone()
            )
        return None if row is None else CodeRecord.model_validate(json.loads(row[0]))

    def all(self) -> list[CodeRecord]:
        """Every kept record, by name then version."""
        with self._lock:
            rows = self._connection().execute(f"SELECT record FROM {_PG_TABLE} ORDER BY name, version").fetchall()
        return [CodeRecord.model_validate(json.loads(row[0])) for row in rows]


def code_store_for(db: str, transcript_path: str) -> CodeStore | PostgresCodeStore:
    """The code versions store of a workflow store: a sidecar file for SQLite, a table for PostgreSQL.

    Without psycopg, a PostgreSQL store keeps them in a local sidecar file (named after the URL)
    and says so once in the log: only this machine's kernels can restore them then.
    """
    if psycopg_for(db, "code versions are kept in a local file, so only this machine's kernels can restore them"):
        return PostgresCodeStore(db)
    return CodeStore(code_path_for(transcript_path))
