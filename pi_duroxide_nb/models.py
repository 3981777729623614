"""Public pydantic models: what crosses a boundary of pi_duroxide_nb."""

from __future__ import annotations

import enum
import json
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatMessage",
    "DeleteResult",
    "EventWait",
    "HistoryEvent",
    "HistoryList",
    "Outcome",
    "RaceResult",
    "RetryPolicy",
    "WorkflowState",
    "WorkflowStatus",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")

LONG_HISTORY_EVENTS = 500
"""From this many events in one execution, states say that ``continue_as_new`` would pay."""
REPLAY_US_PER_STEP = 15.0
"""Measured Python cost of replaying one recorded step (bench/bench_footprint.py, 1 000 steps)."""


class WorkflowStatus(str, enum.Enum):
    """Status of a workflow instance, with the engine's names.

    ``Terminated`` is a cancelled instance (``rt.cancel_workflow``; the engine stores it as
    ``Failed`` with error ``canceled: <reason>``, which ``error`` keeps). ``Pending`` is a start
    the engine has not picked up yet.
    """

    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CONTINUED_AS_NEW = "ContinuedAsNew"
    TERMINATED = "Terminated"
    PENDING = "Pending"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        """True once the instance can no longer make progress."""
        return self in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED)


class WorkflowState(BaseModel):
    """A snapshot of one workflow instance.

    Example:
        state = rt.wait_for_workflow(iid, timeout=60)
        if state.status is pdn.WorkflowStatus.COMPLETED:
            print(state.output)
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    instance_id: str
    """The instance's id."""
    name: str
    """The workflow's registered name."""
    version: str
    """The code version the instance runs (derived from the workflow's code)."""
    status: WorkflowStatus
    """Where the instance is in its life."""
    output: Any = None
    """The return value (an instance of the workflow's output model when it has one)."""
    error: str | None = None
    """Why the instance failed, when it failed."""
    custom_status: str | None = None
    """The last value given to ``ctx.set_custom_status``."""
    created_at: datetime | None = None
    """When the instance was created (UTC)."""
    updated_at: datetime | None = None
    """When the instance last changed (UTC)."""
    parent_instance_id: str | None = None
    """The parent's id, for a sub-workflow."""
    execution_id: int = 1
    """The current execution; each continue-as-new starts the next one."""
    history_events: int | None = None
    """Events recorded in the current execution (``get_workflow`` on a SQLite store fills it).

    Every new step re-runs the workflow from its first event, so a long history makes each
    step slower: ``long_history`` says when ``ctx.continue_as_new`` would pay."""
    blocked: str | None = None
    """Why an unfinished instance cannot move on, and what to do: ``"code missing: ..."`` when
    its workflow version is not registered and could not be restored, ``"waiting for an agent
    host: ..."`` when a ``ctx.pi`` call waits for ``rt.set_host``. None when nothing blocks it."""

    @property
    def long_history(self) -> str | None:
        """A note when the history is long enough that ``ctx.continue_as_new`` would pay, else None.

        The cost is measured: replaying one recorded step costs about 15 µs of Python
        (bench/bench_footprint.py), and every new step replays all of them.
        """
        events = self.history_events or 0
        if events < LONG_HISTORY_EVENTS or self.status.is_terminal:
            return None
        per_step_ms = events / 2 * REPLAY_US_PER_STEP / 1000
        return (
            f"long history: {events} events, so every new step first replays about {events // 2} recorded "
            f"steps (~{per_step_ms:.0f} ms a step, growing). If it loops, end each round with "
            "ctx.continue_as_new(state) to start a short history."
        )


class HistoryEvent(BaseModel):
    """One persisted history event of an instance, with its full payload.

    Payload fields that the engine stores as JSON text (``input``, ``result``, ``output``,
    ``data``) are parsed back into values; everything else the row holds is in ``details``.
    """

    model_config = _FROZEN

    instance_id: str
    execution_id: int
    event_id: int
    """Position in the execution's history, from 1."""
    kind: str
    """The engine's event type, e.g. ``ActivityScheduled``."""
    source_event_id: int | None = None
    """For a completion, the id of the event that scheduled it."""
    timestamp: datetime
    """When the engine recorded the event (UTC)."""
    name: str | None = None
    """Activity, workflow, event or queue name, for the kinds that have one."""
    input: Any = None
    result: Any = None
    output: Any = None
    data: Any = None
    error: str | None = None
    """Failure message, for failed kinds."""
    details: dict[str, Any] = Field(default_factory=dict)
    """Every other field of the stored row (version, fire_at_ms, status, key, value...)."""


class EventWait(BaseModel):
    """An event an instance waits for now (``ctx.wait_for_event``), with the model it expects.

    Example:
        for wait in rt.waiting_for(iid):
            print(wait.name, wait.json_schema)
    """

    model_config = ConfigDict(frozen=True)

    name: str
    """The event's name: send it with ``rt.signal_workflow(iid, name, data)``."""
    model: str | None = None
    """The qualified name of the pydantic model the data must fit, or None (any JSON)."""
    json_schema: dict[str, Any] | None = None
    """The model's JSON Schema, or None when the wait has no model."""
    since: datetime | None = None
    """When the instance started waiting."""


class DeleteResult(BaseModel):
    """What ``rt.delete_workflow`` or ``rt.purge`` removed from the store and the transcript.

    Example:
        done = rt.purge(status="Completed", older_than=timedelta(days=7))
        print(done.instances_deleted, done.events_deleted)
    """

    model_config = _FROZEN

    instance_ids: tuple[str, ...] = ()
    """Every instance deleted: the ones asked for and their sub-workflows."""
    executions_deleted: int = 0
    """Executions removed (more than one per instance after continue-as-new)."""
    events_deleted: int = 0
    """History events removed."""
    transcript_entries_deleted: int = 0
    """Transcript entries of those instances removed (``rt.messages``)."""
    skipped: tuple[str, ...] = ()
    """``purge`` only: instances it matched but left alone (a sub-workflow still running, say)."""

    @property
    def instances_deleted(self) -> int:
        """How many instances were deleted, sub-workflows included."""
        return len(self.instance_ids)

    def __add__(self, other: DeleteResult) -> DeleteResult:
        return DeleteResult(
            instance_ids=self.instance_ids + other.instance_ids,
            executions_deleted=self.executions_deleted + other.executions_deleted,
            events_deleted=self.events_deleted + other.events_deleted,
            transcript_entries_deleted=self.transcript_entries_deleted + other.transcript_entries_deleted,
            skipped=self.skipped + other.skipped,
        )

    def __str__(self) -> str:
        n = self.instances_deleted
        text = (
            f"Deleted {n} instance{'s' if n != 1 else ''} ({self.executions_deleted} executions, "
            f"{self.events_deleted} events, {self.transcript_entries_deleted} transcript entries)."
        )
        if self.skipped:
            text += f" Left {len(self.skipped)} still running: {', '.join(self.skipped[:5])}"
            text += "..." if len(self.skipped) > 5 else "."
        return text


_HISTORY_FORMAT = "pi_duroxide_nb.history/1"
_FRAME_COLUMNS = (
    "instance_id",
    "execution_id",
    "event_id",
    "kind",
    "name",
    "source_event_id",
    "timestamp",
    "input",
    "result",
    "output",
    "data",
    "error",
    "details",
)


class HistoryList(list[HistoryEvent]):
    """What ``rt.history(id)`` returns: a plain list of ``HistoryEvent``, plus exports.

    Example:
        events = rt.history(iid)
        events[0].kind                          # a list as before
        events.to_dataframe()                   # one row per event (needs pandas)
        Path("deploy.json").write_text(events.to_json())
        pdn.ReplayHistory.load("deploy.json")   # the export replays, like ReplayHistory.save's
    """

    def to_json(self, *, indent: int | None = 1) -> str:
        """The events as JSON text: ``{"format", "instance_id", "events": [...]}``, read back by ``from_json``.

        ``ReplayHistory.load`` and ``pdn.replay_check`` accept the file too.
        """
        doc = {
            "format": _HISTORY_FORMAT,
            "instance_id": self[0].instance_id if self else None,
            "events": [event.model_dump(mode="json") for event in self],
        }
        return json.dumps(doc, indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> HistoryList:
        """Parse ``to_json()`` output (or a bare JSON list of events).

        Raises:
            ValueError: the text is not such a document (pydantic's ValidationError names the field).
        """
        doc = json.loads(text)
        items = doc.get("events") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            msg = "A history export holds {'format': ..., 'events': [...]}; write it with rt.history(id).to_json()."
            raise ValueError(msg)
        return cls(HistoryEvent.model_validate(item) for item in items)

    def to_dataframe(self) -> Any:
        """The events as a pandas ``DataFrame``, one row per event, payloads as parsed values.

        Raises:
            ImportError: pandas is not installed (``pip install 'pi_duroxide_nb[pandas]'``).
        """
        try:
            import pandas as pd
        except ImportError as exc:
            msg = (
                "HistoryList.to_dataframe needs pandas, which is not installed. Install the extra: "
                "pip install 'pi_duroxide_nb[pandas]' (or pip install pandas); to_json() needs nothing."
            )
            raise ImportError(msg) from exc
        rows = [{column: getattr(event, column) for column in _FRAME_COLUMNS} for event in self]
        return pd.DataFrame(rows, columns=list(_FRAME_COLUMNS))


class RetryPolicy(BaseModel):
    """How ``ctx.schedule_activity_with_retry`` retries an activity.

    Example:
        RetryPolicy(attempts=5, timeout=timedelta(seconds=10), backoff="exponential")
    """

    model_config = _FROZEN

    attempts: int = Field(default=3, ge=1)
    """Total attempts, the first included."""
    timeout: timedelta | None = None
    """Deadline for each attempt."""
    total_timeout: timedelta | None = None
    """Deadline for all attempts together."""
    backoff: Literal["exponential", "linear", "fixed"] | None = None
    """Delay between attempts: exponential (100 ms doubling, max 30 s), linear, or fixed 1 s."""


class Outcome(BaseModel):
    """The outcome of one task of ``ctx.all(..., return_outcomes=True)``."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    ok: bool
    value: Any = None
    error: str | None = None


class RaceResult(BaseModel):
    """Which task of ``ctx.race(a, b)`` finished first, and its value."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    index: int
    """0 if the first task won, 1 if the second did."""
    value: Any = None


class ChatMessage(BaseModel):
    """An LLM message as pi shapes it: a role and text or content parts.

    Extra fields (tool calls, ids, usage) are kept as given.
    """

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None
