"""What the dashboard shows and does, without widgets: snapshots (view models) and actions.

The controller reads through the runtime (one paged query and one count query per refresh,
never one call per instance) and validates every action before it reaches the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..._errors import PayloadError, PiDuroxideError
from ...engine import RuntimeState, WorkerInfo, WorkflowRuntime
from ...models import DeleteResult, EventWait, HistoryEvent, WorkflowState, WorkflowStatus
from .._display import TimelineBar, timeline_bars

__all__ = [
    "DashboardController",
    "DashboardSnapshot",
    "HistorySnapshot",
    "RuntimeSummary",
    "TranscriptLine",
    "WorkflowSummary",
    "parse_json_field",
]

_TRANSCRIPT_LIMIT = 100


@dataclass(frozen=True)
class WorkflowSummary:
    """A registered workflow: name, its versions (oldest first) and description."""

    name: str
    versions: tuple[str, ...]
    description: str | None


@dataclass(frozen=True)
class RuntimeSummary:
    """The runtime's state, store and instance counts per status."""

    state: str
    db: str
    engine_mode: str
    counts: tuple[tuple[str, int], ...]
    """``(status, count)`` for the statuses that occur, in ``WorkflowStatus`` order."""
    code_missing: tuple[str, ...] = ()
    """One line per workflow version unfinished instances wait for (``rt.code_notices``)."""

    @property
    def total(self) -> int:
        """All instances in the store."""
        return sum(n for _, n in self.counts)


@dataclass(frozen=True)
class TranscriptLine:
    """One message an instance sent to the session (``ctx.pi.send_message``)."""

    instance_id: str
    workflow_name: str
    content: str
    timestamp: datetime | None


@dataclass(frozen=True)
class DashboardSnapshot:
    """Everything the dashboard shows at one moment (times excluded from equality)."""

    workflows: tuple[WorkflowSummary, ...]
    instances: tuple[WorkflowState, ...]
    """The current page, newest first."""
    matching: int
    """Instances matching the filters, over all pages."""
    page: int
    page_size: int
    runtime: RuntimeSummary
    transcript: tuple[TranscriptLine, ...]
    """The newest transcript entries (``rt.messages()``), oldest first."""
    error: str | None = None
    """Why the store could not be read, if it could not."""
    workers: tuple[WorkerInfo, ...] = ()
    """The live worker processes serving the store (``rt.workers()``), oldest first."""
    taken_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc), compare=False)

    @property
    def pages(self) -> int:
        """How many pages the filtered instances fill (at least 1)."""
        return max(1, -(-self.matching // self.page_size))


@dataclass(frozen=True)
class HistorySnapshot:
    """One instance's state, every event of its current execution and its timeline."""

    state: WorkflowState
    events: tuple[HistoryEvent, ...]
    bars: tuple[TimelineBar, ...]
    waiting: tuple[EventWait, ...] = ()
    """The events it waits for now, with their schemas (``rt.waiting_for``)."""


def parse_json_field(text: str, what: str, *, empty: Any = None) -> Any:
    """Parse a JSON text box; empty text gives ``empty``.

    Raises:
        PayloadError: not JSON; the message shows the line and column.
    """
    if not text.strip():
        return empty
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = (
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}). "
            'Write JSON, e.g. {"service": "api"}: double-quoted strings, true/false/null in lower case.'
        )
        raise PayloadError(msg) from None
    except RecursionError:
        msg = f"{what} is nested too deeply to read. Flatten the JSON (a workflow payload may nest 200 levels)."
        raise PayloadError(msg) from None


class DashboardController:
    """Reads snapshots for the dashboard and runs its actions on one runtime.

    Example:
        controller = DashboardController(runtime=rt, page_size=50)
        controller.set_filters(name="deploy", status="Running")
        snap = controller.snapshot()
    """

    def __init__(self, *, runtime: WorkflowRuntime, page_size: int = 50) -> None:
        if not isinstance(page_size, int) or page_size < 1:
            msg = f"page_size must be a positive integer, not {page_size!r}."
            raise PayloadError(msg)
        self.runtime = runtime
        self.page_size = page_size
        self.name: str | None = None
        self.status: WorkflowStatus | None = None
        self.page = 0

    def set_filters(self, *, name: str | None = None, status: str | WorkflowStatus | None = None) -> None:
        """Show only one workflow and/or one status; goes back to the first page."""
        self.name = name or None
        self.status = WorkflowStatus(status) if status else None
        self.page = 0

    def set_page(self, page: int) -> None:
        """Go to a page (from 0); clamped to the pages the last snapshot had."""
        self.page = max(0, page)

    def snapshot(self) -> DashboardSnapshot:
        """Read the current state: one count query, one page query, the transcript."""
        rt = self.runtime
        workflows = tuple(
            WorkflowSummary(name, tuple(d.version for d in versions), versions[-1].description if versions else None)
            for name in rt.registry.workflow_names()
            for versions in [rt.registry.versions(name)]
        )
        try:
            if rt.state is RuntimeState.STOPPED:
                msg = "The runtime is stopped. Start a new one (e.g. %workflow_config or pdn.kernel_runtime())."
                raise PiDuroxideError(msg)
            all_counts = rt.count_workflows()
            counts = rt.count_workflows(name=self.name) if self.name else all_counts
            matching = counts.get(self.status, 0) if self.status else sum(counts.values())
            pages = max(1, -(-matching // self.page_size))
            self.page = min(self.page, pages - 1)
            states = rt.list_workflows(
                name=self.name, status=self.status, limit=self.page_size, offset=self.page * self.page_size
            )
            error = None
        except PiDuroxideError as exc:
            all_counts, states, matching, error = {}, [], 0, str(exc)
        ordered = tuple((s.value, all_counts[s]) for s in WorkflowStatus if all_counts.get(s))
        missing = tuple(str(n) for n in rt.code_notices)
        summary = RuntimeSummary(rt.state.value, rt.db, rt.engine_mode, ordered, missing)
        return DashboardSnapshot(
            workflows=workflows,
            instances=tuple(states),
            matching=matching,
            page=self.page,
            page_size=self.page_size,
            runtime=summary,
            transcript=self._transcript(),
            error=error,
            workers=self._workers(),
        )

    def _workers(self) -> tuple[WorkerInfo, ...]:
        try:
            return tuple(self.runtime.workers())
        except PiDuroxideError:
            return ()

    def _transcript(self) -> tuple[TranscriptLine, ...]:
        try:
            entries = self.runtime.messages(limit=_TRANSCRIPT_LIMIT)
        except PiDuroxideError:
            return ()
        return tuple(
            TranscriptLine(
                instance_id=entry.instance_id or "",
                workflow_name=entry.workflow_name or "",
                content=entry.content if isinstance(entry.content, str) else json.dumps(entry.content, default=str),
                timestamp=entry.timestamp,
            )
            for entry in entries
        )

    def history(self, instance_id: str) -> HistorySnapshot:
        """An instance's state, events and timeline bars (two store queries)."""
        state = self.runtime.get_workflow(instance_id)
        events = tuple(self.runtime.history(instance_id))
        waiting: tuple[EventWait, ...] = ()
        if not state.status.is_terminal and state.status is not WorkflowStatus.PENDING:
            waiting = tuple(self.runtime.waiting_for(instance_id, history=events))
        return HistorySnapshot(state=state, events=events, bars=tuple(timeline_bars(events)), waiting=waiting)

    # --- actions -------------------------------------------------------------------------------

    def start(self, name: str, input_text: str) -> str:
        """Start ``name`` with the JSON in ``input_text`` (empty means ``{}``); returns the id."""
        if not name:
            raise PayloadError("Pick a workflow to start.")
        data = parse_json_field(input_text, f"The input of {name!r}", empty={})
        return self.runtime.start_workflow(name, data)

    def signal(self, instance_id: str, event_name: str, data_text: str) -> None:
        """Raise ``event_name`` with the JSON in ``data_text`` (empty means ``null``) on an instance."""
        if not instance_id:
            raise PayloadError("Select an instance to signal first.")
        if not event_name.strip():
            raise PayloadError("Type the event name the workflow waits for (ctx.wait_for_event(name)).")
        data = parse_json_field(data_text, f"The payload of event {event_name!r}")
        self.runtime.signal_workflow(instance_id, event_name.strip(), data)

    def send_event(self, instance_id: str, event_name: str, data: Any) -> None:
        """Raise ``event_name`` with ``data`` (already parsed: the event form's) on an instance."""
        if not instance_id:
            raise PayloadError("Select an instance to signal first.")
        self.runtime.signal_workflow(instance_id, event_name, data)

    def cancel(self, instance_id: str) -> None:
        """Cancel an instance."""
        if not instance_id:
            raise PayloadError("Select an instance to cancel first.")
        self.runtime.cancel_workflow(instance_id, "cancelled from the dashboard")

    def delete(self, instance_id: str, *, force: bool = False) -> DeleteResult:
        """Delete an instance with its sub-workflows and transcript entries (``force`` cancels a running one)."""
        if not instance_id:
            raise PayloadError("Select an instance to delete first.")
        return self.runtime.delete_workflow(instance_id, force=force)

    def replay(self, instance_id: str) -> Any:
        """Open the replay stepper on an instance."""
        if not instance_id:
            raise PayloadError("Select an instance to replay first.")
        from ._replay import replay_widget

        return replay_widget(self.runtime, instance_id, follow=None)  # the dashboard's refresh makes it follow
