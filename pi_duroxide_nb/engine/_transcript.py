"""The session transcript: what workflows said (``ctx.pi.send_message``) and did (``ctx.pi.tool``).

The runtime owns one ``TranscriptStore`` beside its workflow store, so the transcript works
whatever agent host is bound. Entries are written with aiosqlite into a sidecar file of ours
(``<db>.transcript.sqlite``, see ``_sidecar``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from ._sidecar import SidecarDb

__all__ = ["TranscriptEntry", "TranscriptStore", "transcript_path_for"]

_log = logging.getLogger("pi_duroxide_nb.transcript")
_T = TypeVar("_T")

CustomType = Literal["workflow_message", "workflow_tool_call"]


class TranscriptEntry(BaseModel):
    """One entry of the session transcript, as pi's custom session entries are shaped.

    Example:
        for entry in rt.messages(iid):
            print(entry.timestamp, entry.custom_type, entry.content)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    """Position in the transcript (increasing, from 1)."""
    instance_id: str | None
    """The workflow instance that wrote it (None when written outside an activity)."""
    workflow_name: str | None
    """The workflow that wrote it."""
    custom_type: CustomType
    """``workflow_message`` for ``ctx.pi.send_message``, ``workflow_tool_call`` for ``ctx.pi.tool``."""
    content: Any
    """The message content, or a one-line summary of the tool call."""
    details: dict[str, Any] | None = None
    """For tool calls: ``name``, ``args`` and ``result`` or ``error``; for messages, the host's answer."""
    timestamp: datetime
    """When it was written (timezone-aware UTC)."""


def transcript_path_for(db: str | Path | None, *, fallback_dir: Path) -> str:
    """Where the transcript of a workflow store lives.

    A SQLite store ``workflows.db`` keeps it in ``workflows.db.transcript.sqlite``. A
    PostgreSQL store (``db`` a URL) keeps it in a local file under ``fallback_dir`` named
    after a hash of the URL, so it survives restarts of this machine's kernel (other hosts
    sharing the database keep their own transcripts).
    """
    text = str(db)
    if text.startswith(("postgres://", "postgresql://")):
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return str(fallback_dir / "transcripts" / f"{digest}.transcript.sqlite")
    return text + ".transcript.sqlite"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS transcript ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " instance_id TEXT, workflow_name TEXT, custom_type TEXT NOT NULL,"
    " content TEXT NOT NULL, details TEXT, timestamp_us INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS transcript_by_instance ON transcript(instance_id, id)",
)


class TranscriptStore(SidecarDb):
    """Persisted transcript entries for one workflow store, plus live subscribers.

    Entries may repeat: the activity that writes one runs at least once, so a process killed
    after writing the entry but before the engine recorded the activity's completion writes it
    again when the activity is retried. The engine gives activities no scheduling identity to
    deduplicate by, and legitimately repeated messages must not be dropped.
    """

    schema = _SCHEMA
    what = "transcript"
    lost = "the session transcript (ctx.pi.send_message and tool entries)"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._subscribers: list[Callable[[TranscriptEntry], None]] = []

    # --- writing and reading -------------------------------------------------------------------

    def append(
        self,
        *,
        instance_id: str | None,
        workflow_name: str | None,
        custom_type: CustomType,
        content: Any,
        details: dict[str, Any] | None = None,
    ) -> TranscriptEntry:
        """Persist an entry, then hand it to every subscriber (in this thread)."""
        now = datetime.now(timezone.utc)
        content_text = json.dumps(content, default=str)
        details_text = None if details is None else json.dumps(details, default=str)
        stamp = int(now.timestamp() * 1_000_000)

        async def insert() -> int:
            cursor = await self._conn.execute(
                "INSERT INTO transcript (instance_id, workflow_name, custom_type, content, details, timestamp_us)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (instance_id, workflow_name, custom_type, content_text, details_text, stamp),
            )
            await self._conn.commit()
            return int(cursor.lastrowid)

        row_id = self._run(insert())
        entry = TranscriptEntry(
            id=row_id,
            instance_id=instance_id,
            workflow_name=workflow_name,
            custom_type=custom_type,
            content=json.loads(content_text),
            details=None if details_text is None else json.loads(details_text),
            timestamp=_from_us(stamp),
        )
        for callback in list(self._subscribers):
            try:
                callback(entry)
            except Exception:  # a broken display hook must not fail the workflow's activity
                _log.exception("pi_duroxide_nb: a transcript subscriber raised")
        return entry

    def entries(self, instance_id: str | None = None, *, limit: int | None = None) -> list[TranscriptEntry]:
        """Entries oldest first; only ``instance_id``'s when given; only the newest ``limit`` when given."""

        async def select() -> list[Any]:
            where, args = ("WHERE instance_id = ? ", [instance_id]) if instance_id is not None else ("", [])
            # Newest first with LIMIT (-1: none) reads only what is asked for; reversed below.
            sql = f"SELECT * FROM transcript {where}ORDER BY id DESC LIMIT ?"
            async with self._conn.execute(sql, [*args, -1 if limit is None else limit]) as cursor:
                return list(reversed(await cursor.fetchall()))

        return [
            TranscriptEntry(
                id=row[0],
                instance_id=row[1],
                workflow_name=row[2],
                custom_type=row[3],
                content=json.loads(row[4]),
                details=None if row[5] is None else json.loads(row[5]),
                timestamp=_from_us(row[6]),
            )
            for row in self._run(select())
        ]

    def delete(self, instance_ids: Iterable[str]) -> int:
        """Remove every entry of these instances; returns how many were removed."""
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            return 0

        async def remove() -> int:
            removed = 0
            for start in range(0, len(ids), 500):  # SQLite caps the parameters of one statement
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                cursor = await self._conn.execute(f"DELETE FROM transcript WHERE instance_id IN ({marks})", chunk)
                removed += max(0, int(cursor.rowcount))
            await self._conn.commit()
            return removed

        return self._run(remove())

    def subscribe(self, callback: Callable[[TranscriptEntry], None]) -> Callable[[], None]:
        """Call ``callback`` with each new entry; returns a function that unsubscribes."""
        if not callable(callback):
            msg = f"on_message takes a function of one TranscriptEntry, not {callback!r}."
            raise TypeError(msg)
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, tz=timezone.utc)
