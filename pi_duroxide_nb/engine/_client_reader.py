"""``ClientStoreReader``: the store reads of a PostgreSQL store, through duroxide's client.

The SQLite store is read from its tables (``SqliteStoreReader``); a PostgreSQL store through
duroxide's client, which has no paging, no timestamps for some events and a lossy history
payload. Both offer the ``StoreReader`` protocol, so ``WorkflowRuntime`` does not branch on
the backend for a read.

The client cannot see a start another runtime queued until an engine picks it up, so starts
this runtime queued are remembered (``remember_queued``) and reported as ``Pending`` until the
client sees them, or for ``QUEUED_FOR`` at most; a wait grants an unknown id a short grace
(``may_appear``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from .._errors import InstanceNotFoundError, RuntimeStateError
from ..models import HistoryEvent, WorkflowState, WorkflowStatus
from ._json import loads_lenient
from ._store import is_cancel_error

__all__ = ["QUEUED_FOR", "ClientStoreReader"]

QUEUED_FOR = timedelta(minutes=5)
"""How long a start queued on PostgreSQL is reported as Pending without the engine seeing it."""


def _from_epoch_ms(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc) if isinstance(value, int) and value > 0 else None


class ClientStoreReader:
    """Reads a store through duroxide's client (PostgreSQL)."""

    path: str | None = None
    """No local file."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self._client = client
        self._queued: dict[str, WorkflowState] = {}

    # --- what this runtime queued ----------------------------------------------------------

    def remember_queued(self, state: WorkflowState) -> None:
        """A start this runtime queued: report it as Pending until the client sees it."""
        now = datetime.now(timezone.utc)
        # Never looked up again, an entry would stay forever: drop those the engine has long
        # picked up (dicts keep insertion order, so the oldest come first).
        while self._queued and now - (next(iter(self._queued.values())).created_at or now) > QUEUED_FOR:
            self._queued.pop(next(iter(self._queued)))
        self._queued[state.instance_id] = state

    def forget(self, instance_ids: Sequence[str]) -> None:
        """Deleted instances."""
        for iid in instance_ids:
            self._queued.pop(iid, None)

    def may_appear(self, instance_id: str, within: float) -> bool:
        """Whether an unseen instance shows up within ``within`` s (a start queued elsewhere)."""
        if instance_id in self._queued:
            return True
        client = self._client()
        try:
            client.wait_for_orchestration(instance_id, max(1, int(within * 1000)))
        except Exception:  # timed out: it may have started but not finished, or not exist at all
            pass
        return bool(client.get_status(instance_id).status != "NotFound")

    # --- the StoreReader protocol -------------------------------------------------------------

    def state(self, instance_id: str) -> WorkflowState | None:
        """One instance's state, or None if the store does not know it."""
        client = self._client()
        status = client.get_status(instance_id)
        if status.status == "NotFound":
            return self._queued.get(instance_id)
        self._queued.pop(instance_id, None)
        try:
            info = client.get_instance_info(instance_id)
        except Exception:  # failed before its instance row was written: the status is all there is
            info = None
        status_value = WorkflowStatus(status.status)
        if status_value is WorkflowStatus.FAILED and is_cancel_error(status.error):
            status_value = WorkflowStatus.TERMINATED  # cancelled: the engine reports it as Failed
        return WorkflowState(
            instance_id=instance_id,
            name=info.orchestration_name if info is not None else "",
            version=info.orchestration_version if info is not None else "",
            status=status_value,
            output=status.output if status.status == "Completed" else None,
            error=status.error,
            custom_status=status.custom_status,
            parent_instance_id=info.parent_instance_id if info is not None else None,
            execution_id=int(info.current_execution_id) if info is not None else 1,
            created_at=_from_epoch_ms(info.created_at) if info is not None else None,
            updated_at=_from_epoch_ms(info.updated_at) if info is not None else None,
        )

    def states(
        self, *, instance_id: str | None = None, name: str | None = None, status: str | None = None
    ) -> list[WorkflowState]:
        """Instance states, filtered (one client call per instance: the client has no listing)."""
        if instance_id is not None:
            found = self.state(instance_id)
            return [found] if found is not None and (name is None or found.name == name) else []
        return self.states_page(name=name, status=status, limit=None)

    def states_page(
        self, *, name: str | None = None, status: str | None = None, limit: int | None = 50, offset: int = 0
    ) -> list[WorkflowState]:
        """One page of states, filtered by workflow name and status."""
        ids = [str(i) for i in self._client().list_all_instances()]
        states = [s for s in (self.state(i) for i in ids) if s is not None]
        states += [q for i, q in list(self._queued.items()) if i not in ids]
        matching = [s for s in states if (name is None or s.name == name) and (status is None or s.status == status)]
        return matching[offset : None if limit is None else offset + limit]

    def status_counts(self, *, name: str | None = None) -> dict[str, int]:
        """How many instances are in each status."""
        counts: dict[str, int] = {}
        for state in self.states_page(name=name, limit=None):
            counts[state.status.value] = counts.get(state.status.value, 0) + 1
        return counts

    def exists(self, instance_id: str) -> bool:
        """True if the instance exists or this runtime queued its start."""
        return instance_id in self._queued or self._client().get_status(instance_id).status != "NotFound"

    def history(self, instance_id: str, execution_id: int | None = None) -> list[HistoryEvent]:
        """The client's events of one execution (some payloads are not available through it)."""
        client = self._client()
        if client.get_status(instance_id).status == "NotFound":
            if instance_id in self._queued:  # started here, not picked up yet: no events so far
                return []
            raise InstanceNotFoundError(instance_id)
        exec_id = execution_id or int(client.get_instance_info(instance_id).current_execution_id)
        events = []
        for e in client.read_execution_history(instance_id, exec_id):
            data = loads_lenient(e.data)
            name = data.get("name") if isinstance(data, dict) and isinstance(data.get("name"), str) else None
            if str(e.kind) == "ExternalEvent" and isinstance(data, dict):
                data = data.get("data")  # the event's payload, as the SQLite reader gives it
            events.append(
                HistoryEvent(
                    instance_id=instance_id,
                    execution_id=exec_id,
                    event_id=int(e.event_id),
                    kind=str(e.kind),
                    source_event_id=e.source_event_id,
                    timestamp=datetime.fromtimestamp(int(e.timestamp_ms) / 1000, tz=timezone.utc),
                    name=name,
                    data=data,
                )
            )
        return events

    def history_rows(self, instance_id: str, execution_id: int | None = None) -> tuple[int, list[str]] | None:
        """Not available: the client does not give the stored texts."""
        msg = "The stored event rows are read from SQLite stores only; on PostgreSQL use rt.history(...)."
        raise RuntimeStateError(msg)

    def executions(self, instance_id: str) -> list[int]:
        """The execution ids of an instance."""
        return [int(e) for e in self._client().list_executions(instance_id)]

    def kv(self, instance_id: str) -> dict[str, Any]:
        """Not available: the client reads one key at a time."""
        msg = (
            "Listing all KV entries needs the SQLite store; on PostgreSQL the engine reads one key at a "
            "time: call rt.get_kv(instance_id, key)."
        )
        raise RuntimeStateError(msg)

    def unfinished(self) -> list[tuple[str, str, str]]:
        """``(name, version, instance_id)`` of every running instance."""
        client = self._client()
        found = []
        for iid in client.list_instances_by_status("Running"):
            try:
                info = client.get_instance_info(iid)
            except Exception:  # gone in between
                continue
            found.append((str(info.orchestration_name), str(info.orchestration_version or ""), str(iid)))
        return found

    def set_aside_activities(self) -> dict[str, set[str]]:
        """Not visible through the client: nothing reported."""
        return {}

    def nudge(self, *, instances: Sequence[str] = (), activities: Sequence[str] = ()) -> int:
        """Not possible through the client: the engine's own retry (at most a minute) applies."""
        return 0

    def close(self) -> None:
        """Nothing to release (the client belongs to the runtime)."""
