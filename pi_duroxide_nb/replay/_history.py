"""History value objects: one execution's events exactly as the engine stored them.

The stepper matches code against history with the engine's own rule (exact equality of
the JSON text of inputs), so these objects keep each payload's stored text next to its
parsed value. Histories load from the store (full ``history.event_data`` rows), from
``rt.history()`` (typed events, re-encoded with ``json.dumps`` as the Python SDK wrote
them) or from a JSON export written by ``ReplayHistory.save``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._errors import InstanceNotFoundError, PayloadError
from ..engine import SqliteStoreReader, history_event_from_row
from ..models import HistoryEvent

if TYPE_CHECKING:
    from ..engine import WorkflowRuntime

__all__ = ["RecordedEvent", "ReplayHistory", "kv_after", "load_history", "parse_text"]

_FORMAT = "pi_duroxide_nb.replay.history/1"
_EVENTS_FORMAT = "pi_duroxide_nb.history/1"
"""The format of ``rt.history(iid).to_json()`` (``HistoryList``), which loads too."""
_SYSCALL_PREFIX = "__duroxide_syscall:"
_PAYLOAD_KEYS = ("result", "output", "data")
_STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def parse_text(text: str | None) -> Any:
    """A stored text as the SDK's driver reads it: JSON, else the text itself (e.g. a GUID)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


@dataclass(frozen=True)
class RecordedEvent:
    """One stored history event, with its payload texts as the engine wrote them.

    Example:
        ev = history.events[1]
        ev.kind, ev.name, ev.input_text      # 'ActivityScheduled', 'fetch', '"https://api"'
    """

    event_id: int
    """Position in the execution's history, from 1."""
    kind: str
    """The engine's event type, e.g. ``ActivityScheduled``."""
    source_event_id: int | None = None
    """For a completion, the id of the event that scheduled it."""
    timestamp_ms: int | None = None
    """When the engine recorded the event (ms since the epoch, UTC)."""
    name: str | None = None
    """Activity, workflow or event name, for the kinds that have one."""
    input_text: str | None = None
    """The stored JSON text of ``input`` (compared byte for byte against the code's)."""
    payload_text: str | None = None
    """The stored text of ``result``, ``output`` or ``data``."""
    error: str | None = None
    """The failure message, for failed kinds."""
    fields: Mapping[str, Any] = field(default_factory=dict)
    """Every other stored field (fire_at_ms, status, key, value, instance, version, ...); read-only."""

    def __post_init__(self) -> None:
        # Snapshots share these events: a caller's edit must not change what every step shows.
        if not isinstance(self.fields, MappingProxyType):
            object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    @property
    def input(self) -> Any:
        """The parsed input."""
        return parse_text(self.input_text)

    @property
    def value(self) -> Any:
        """The parsed result, output or event data."""
        return parse_text(self.payload_text)

    @property
    def timestamp(self) -> datetime | None:
        """``timestamp_ms`` as an aware UTC datetime."""
        if self.timestamp_ms is None:
            return None
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=timezone.utc)

    @property
    def is_terminal(self) -> bool:
        """True for the event that ends an execution."""
        return self.kind in ("OrchestrationCompleted", "OrchestrationFailed", "OrchestrationContinuedAsNew")

    def describe(self) -> str:
        """A one-line summary, e.g. ``#5 ActivityCompleted <- #4 = {"ok": 1}``."""
        text = f"#{self.event_id} {self.kind}"
        if self.source_event_id is not None:
            text += f" <- #{self.source_event_id}"
        if self.name:
            text += f" {self.name}"
        if self.input_text is not None:
            text += f"({_clip(self.input_text)})"
        if self.payload_text is not None:
            text += f" = {_clip(self.payload_text)}"
        if self.error is not None:
            text += f" ! {_clip(self.error.strip().splitlines()[-1] if self.error.strip() else self.error)}"
        for key in ("status", "key", "value", "fire_at_ms"):
            if key in self.fields:
                text += f" {key}={_clip(str(self.fields[key]))}"
        return text

    def to_row(self) -> dict[str, Any]:
        """The event as a stored row (the JSON export format)."""
        row: dict[str, Any] = {
            "event_id": self.event_id,
            "source_event_id": self.source_event_id,
            "timestamp_ms": self.timestamp_ms,
            "type": self.kind,
        }
        if self.name is not None:
            row["name"] = self.name
        if self.input_text is not None:
            row["input"] = self.input_text
        row.update(dict(self.fields))
        if self.payload_text is not None:
            key = "output" if self.kind == "OrchestrationCompleted" else "result"
            if self.kind.startswith("External"):
                key = "data"
            row[key] = self.payload_text
        if self.error is not None and "details" not in row:
            row["error"] = self.error
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | str, execution_id: int = 1) -> RecordedEvent:
        """Build an event from one stored ``history.event_data`` row (dict or JSON text)."""
        raw: dict[str, Any] = json.loads(row) if isinstance(row, str) else dict(row)
        if "type" not in raw or "event_id" not in raw:
            msg = (
                f"A history row needs 'type' and 'event_id'; got keys {sorted(raw)}. Export histories "
                "with ReplayHistory.save (or pass rt.history(...) events) instead of hand-written rows."
            )
            raise PayloadError(msg)
        error: str | None = None
        if "details" in raw or "error" in raw:
            error = history_event_from_row(execution_id, json.dumps(raw)).error
        payload = next((raw[k] for k in _PAYLOAD_KEYS if raw.get(k) is not None), None)
        skip = {"event_id", "source_event_id", "timestamp_ms", "type", "name", "input", "instance_id", "execution_id"}
        skip.update(_PAYLOAD_KEYS)
        return cls(
            event_id=int(raw["event_id"]),
            kind=str(raw["type"]),
            source_event_id=raw.get("source_event_id"),
            timestamp_ms=raw.get("timestamp_ms"),
            name=raw.get("name"),
            input_text=raw.get("input"),
            payload_text=None if payload is None else str(payload),
            error=error,
            fields={k: v for k, v in raw.items() if k not in skip and k != "error"},
        )

    @classmethod
    def from_history_event(cls, event: HistoryEvent) -> RecordedEvent:
        """Build an event from a typed ``HistoryEvent`` (payloads re-encoded with ``json.dumps``).

        The Python SDK wrote the stored texts with ``json.dumps``, so re-encoding the parsed
        values gives the same text back; the engine's syscalls store raw text, kept as is.
        """
        input_text: str | None = None
        if event.input is not None or event.kind in (
            "OrchestrationStarted",
            "ActivityScheduled",
            "SubOrchestrationScheduled",
        ):
            if event.kind == "ActivityScheduled" and (event.name or "").startswith(_SYSCALL_PREFIX):
                input_text = event.input if isinstance(event.input, str) else json.dumps(event.input)
            else:
                input_text = json.dumps(event.input)
        payload: Any = next(
            (getattr(event, k) for k in ("result", "output", "data") if getattr(event, k) is not None), None
        )
        payload_text = None
        if payload is not None:
            payload_text = payload if isinstance(payload, str) and _is_raw_text(payload) else json.dumps(payload)
        elif event.kind in ("ActivityCompleted", "SubOrchestrationCompleted", "OrchestrationCompleted"):
            payload_text = "null"
        return cls(
            event_id=event.event_id,
            kind=event.kind,
            source_event_id=event.source_event_id,
            timestamp_ms=int(event.timestamp.timestamp() * 1000),
            name=event.name,
            input_text=input_text,
            payload_text=payload_text,
            error=event.error,
            fields=dict(event.details),
        )


def _is_raw_text(value: str) -> bool:
    """True for stored texts that are not JSON (the engine's GUID results)."""
    try:
        json.loads(value)
    except (json.JSONDecodeError, TypeError):
        return len(value) == 36 and value.count("-") == 4
    return False


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class ReplayHistory:
    """One execution of one instance, ready to be replayed.

    Example:
        history = pdn.ReplayHistory.from_runtime(rt, iid)
        history.save("tests/replay_fixtures/deploy.json")
        again = pdn.ReplayHistory.load("tests/replay_fixtures/deploy.json")
    """

    instance_id: str
    execution_id: int
    events: tuple[RecordedEvent, ...]
    kv_seed: Mapping[str, str] = field(default_factory=dict)
    """KV entries (stored texts) carried in from earlier executions: what ``ctx.kv`` starts with; read-only."""

    def __post_init__(self) -> None:
        if not isinstance(self.kv_seed, MappingProxyType):
            object.__setattr__(self, "kv_seed", MappingProxyType(dict(self.kv_seed)))
        if not self.events or self.events[0].kind != "OrchestrationStarted":
            first = self.events[0].kind if self.events else "nothing"
            msg = (
                f"The history of {self.instance_id!r} (execution {self.execution_id}) starts with {first}, "
                "not OrchestrationStarted, so it cannot be replayed. Pass every event of one execution, "
                "in order (rt.history(iid, execution_id=n) or a file written by ReplayHistory.save)."
            )
            raise PayloadError(msg)

    @property
    def started(self) -> RecordedEvent:
        """The ``OrchestrationStarted`` event."""
        return self.events[0]

    @property
    def workflow_name(self) -> str:
        """The workflow the instance runs."""
        return str(self.started.name or "")

    @property
    def version(self) -> str:
        """The code version the execution started with."""
        return str(self.started.fields.get("version") or "")

    @property
    def input_text(self) -> str:
        """The stored input text of the execution."""
        return self.started.input_text if self.started.input_text is not None else "null"

    @property
    def terminal(self) -> RecordedEvent | None:
        """The event that ended the execution, if it ended."""
        return next((e for e in self.events if e.is_terminal), None)

    def __len__(self) -> int:
        return len(self.events)

    # --- building --------------------------------------------------------------------------

    @classmethod
    def from_rows(
        cls, rows: Iterable[Mapping[str, Any] | str], *, instance_id: str | None = None, execution_id: int | None = None
    ) -> ReplayHistory:
        """Build from stored ``history.event_data`` rows (dicts or JSON texts)."""
        parsed = [json.loads(r) if isinstance(r, str) else dict(r) for r in rows]
        if not parsed:
            msg = "An empty history cannot be replayed; pass the events of one execution."
            raise PayloadError(msg)
        iid = instance_id if instance_id is not None else str(parsed[0].get("instance_id", ""))
        exe = execution_id if execution_id is not None else int(parsed[0].get("execution_id", 1))
        events = tuple(RecordedEvent.from_row(r, exe) for r in parsed)
        return cls(instance_id=iid, execution_id=exe, events=events)

    @classmethod
    def from_events(cls, events: Sequence[HistoryEvent]) -> ReplayHistory:
        """Build from ``rt.history(...)`` events (one execution)."""
        if not events:
            msg = "An empty history cannot be replayed; pass the events of one execution."
            raise PayloadError(msg)
        executions = {e.execution_id for e in events}
        if len(executions) > 1:
            msg = (
                f"The events span executions {sorted(executions)}; a replay covers one execution. "
                "Use rt.history(iid, execution_id=n)."
            )
            raise PayloadError(msg)
        return cls(
            instance_id=events[0].instance_id,
            execution_id=events[0].execution_id,
            events=tuple(RecordedEvent.from_history_event(e) for e in events),
        )

    @classmethod
    def from_runtime(cls, rt: WorkflowRuntime, instance_id: str, *, execution_id: int | None = None) -> ReplayHistory:
        """Read one execution (the current one by default) from the runtime's store.

        On SQLite the full stored rows are read (through a read-only child process, never
        in this process); on PostgreSQL the typed events of ``rt.history`` are re-encoded.

        Raises:
            InstanceNotFoundError: no such instance, or no such execution of it.
        """
        if rt.db.startswith(("postgres://", "postgresql://")):
            return cls.from_events(rt.history(instance_id, execution_id=execution_id))
        return cls._from_stored_rows(
            lambda n: rt.history_rows(instance_id, execution_id=n),
            rt.executions(instance_id),
            instance_id,
            execution_id,
        )

    @classmethod
    def from_store(
        cls, path: str | os.PathLike[str], instance_id: str, *, execution_id: int | None = None
    ) -> ReplayHistory:
        """Read one execution (the current one by default) from a SQLite store file, no runtime needed.

        The file is read by a read-only child process, never opened in this process (that
        would drop a running engine's locks on it), so it is safe on a store in use.

        Raises:
            PayloadError: the file does not exist.
            InstanceNotFoundError: no such instance, or no such execution of it.
        """
        target = Path(path)
        if not target.is_file():
            msg = f"No workflow store at {str(target)!r}. Pass the path of the SQLite file a runtime writes (rt.db)."
            raise PayloadError(msg)
        reader = SqliteStoreReader(str(target))
        try:

            def rows(n: int | None) -> tuple[int, list[str]]:
                found = reader.history_rows(instance_id, n)
                if found is None:
                    raise InstanceNotFoundError(instance_id if n is None else f"{instance_id} (execution {n})")
                return found

            return cls._from_stored_rows(rows, reader.executions(instance_id), instance_id, execution_id)
        finally:
            reader.close()

    @classmethod
    def _from_stored_rows(
        cls,
        rows: Callable[[int | None], tuple[int, list[str]]],
        executions: Sequence[int],
        instance_id: str,
        execution_id: int | None,
    ) -> ReplayHistory:
        exe, texts = rows(execution_id)
        # KV outlives continue-as-new: a later execution starts with what earlier ones left.
        earlier = [
            event
            for n in executions
            if n < exe
            for event in (RecordedEvent.from_row(r) for r in rows(n)[1])
            if event.kind in ("KeyValueSet", "KeyValueCleared", "KeyValuesCleared")
        ]
        history = cls.from_rows(texts, instance_id=instance_id, execution_id=exe)
        seed = kv_after(earlier)
        return dataclasses.replace(history, kv_seed=seed) if seed else history

    # --- JSON export -----------------------------------------------------------------------

    def to_json(self) -> str:
        """The history as JSON text (stored rows, exactly), for fixtures checked in beside tests."""
        doc: dict[str, Any] = {
            "format": _FORMAT,
            "instance_id": self.instance_id,
            "execution_id": self.execution_id,
        }
        if self.kv_seed:
            doc["kv_seed"] = dict(self.kv_seed)
        doc["events"] = [e.to_row() for e in self.events]
        return json.dumps(doc, indent=1)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``to_json()`` to ``path``; returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.to_json() + "\n", encoding="utf-8")
        return target

    @classmethod
    def from_json(cls, text: str) -> ReplayHistory:
        """Parse ``to_json()`` output, a bare list of stored rows, or ``rt.history(iid).to_json()`` output."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"The history file is not JSON ({exc}). Write it with ReplayHistory.save."
            raise PayloadError(msg, cause=exc) from exc
        if _is_event_export(doc):  # rt.history(iid).to_json(): typed events, not stored rows
            items = doc["events"] if isinstance(doc, dict) else doc
            try:
                events = [HistoryEvent.model_validate(item) for item in items]
            except ValueError as exc:
                msg = f"The history file holds events that do not read back ({exc}). Export it again."
                raise PayloadError(msg, cause=exc) from exc
            return cls.from_events(events)
        if isinstance(doc, list):
            return cls.from_rows(doc)
        if not isinstance(doc, dict) or "events" not in doc:
            msg = "A history file holds {'format': ..., 'events': [...]}; write it with ReplayHistory.save."
            raise PayloadError(msg)
        history = cls.from_rows(doc["events"], instance_id=doc.get("instance_id"), execution_id=doc.get("execution_id"))
        seed = doc.get("kv_seed") or {}
        return dataclasses.replace(history, kv_seed={str(k): str(v) for k, v in seed.items()}) if seed else history

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ReplayHistory:
        """Read a file written by ``save``.

        Raises:
            PayloadError: the file is missing or does not hold a history.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"Cannot read the history file {str(path)!r}: {exc.strerror or exc}. Check the path."
            raise PayloadError(msg, cause=exc) from exc
        return cls.from_json(text)


def _is_event_export(doc: Any) -> bool:
    """True for ``HistoryList.to_json()`` output (events with ``kind``), as opposed to stored rows (``type``)."""
    if isinstance(doc, dict):
        if doc.get("format") == _EVENTS_FORMAT:
            return True
        doc = doc.get("events")
    return (
        isinstance(doc, list) and bool(doc) and isinstance(doc[0], dict) and "kind" in doc[0] and "type" not in doc[0]
    )


def kv_after(events: Iterable[RecordedEvent], start: Mapping[str, str] | None = None) -> dict[str, str]:
    """The KV entries (stored texts) after applying the KV events of ``events`` in order."""
    kv = dict(start or {})
    for event in events:
        if event.kind == "KeyValueSet":
            kv[str(event.fields.get("key"))] = str(event.fields.get("value"))
        elif event.kind == "KeyValueCleared":
            kv.pop(str(event.fields.get("key")), None)
        elif event.kind == "KeyValuesCleared":
            kv.clear()
    return kv


def load_history(source: Any) -> ReplayHistory:
    """Turn any supported history source into a ``ReplayHistory``.

    Accepts a ``ReplayHistory``, a list of ``HistoryEvent`` (from ``rt.history``), a list of
    stored rows, a path to a JSON export, JSON text, or a store and an instance id:
    ``(rt, instance_id)`` or ``(path_to_store.db, instance_id)`` (its current execution).

    Raises:
        PayloadError: the source is none of these.
    """
    if isinstance(source, ReplayHistory):
        return source
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        if isinstance(source, os.PathLike) or (not text.lstrip().startswith(("{", "["))):
            if Path(text).suffix.lower() in _STORE_SUFFIXES:
                msg = (
                    f"{text!r} looks like a workflow store, which holds many instances. Name the one to "
                    f"replay: ({text!r}, instance_id), or ReplayHistory.from_store(path, instance_id)."
                )
                raise PayloadError(msg)
            return ReplayHistory.load(source)
        return ReplayHistory.from_json(text)
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], str):
        store, instance_id = source
        if isinstance(store, (str, os.PathLike)):
            return ReplayHistory.from_store(store, instance_id)
        if hasattr(store, "history_rows"):
            return ReplayHistory.from_runtime(store, instance_id)
    if isinstance(source, Sequence):
        items = list(source)
        if not items:
            msg = "An empty history cannot be replayed; pass the events of one execution (rt.history(iid))."
            raise PayloadError(msg)
        if items and all(isinstance(e, HistoryEvent) for e in items):
            return ReplayHistory.from_events(items)
        if items and all(isinstance(e, (Mapping, str)) for e in items):
            return ReplayHistory.from_rows(items)
        if items and all(isinstance(e, RecordedEvent) for e in items):
            return ReplayHistory(instance_id="", execution_id=1, events=tuple(items))
    msg = (
        f"Cannot read a history from {type(source).__name__}. Pass rt.history(iid) events, a "
        "ReplayHistory, the path of a JSON file written by ReplayHistory.save, or (rt or store path, iid)."
    )
    raise PayloadError(msg)
