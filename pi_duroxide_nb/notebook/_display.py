"""Rich (HTML) and deterministic plain-text views of states, listings and histories.

The text repr leaves out times, durations and versions, so a notebook's saved outputs
compare equal across runs (nbval); the HTML shows everything.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..engine import format_ref, format_version
from ..models import HistoryEvent, WorkflowState, WorkflowStatus

__all__ = [
    "ErrorSummary",
    "error_html",
    "error_text",
    "summarize_error",
    "HistoryView",
    "StateListView",
    "StateView",
    "TimelineBar",
    "format_duration",
    "timeline_bars",
    "timeline_html",
    "view",
]

_STATUS_COLOURS = {
    WorkflowStatus.RUNNING: "#1f6feb",
    WorkflowStatus.COMPLETED: "#1a7f37",
    WorkflowStatus.FAILED: "#cf222e",
    WorkflowStatus.CONTINUED_AS_NEW: "#8250df",
    WorkflowStatus.TERMINATED: "#cf222e",
    WorkflowStatus.PENDING: "#9a6700",
}
_KIND_COLOURS = {"activity": "#1f6feb", "timer": "#9a6700", "sub-workflow": "#8250df", "event": "#57606a"}
_TABLE_STYLE = (
    "<style>.pdn-t{border-collapse:collapse;font-size:12px}.pdn-t td,.pdn-t th{padding:2px 8px;"
    "border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top}.pdn-t .err{color:#cf222e}"
    ".pdn-t td.nw{white-space:nowrap}.pdn-t td.pl{overflow-wrap:anywhere;min-width:12ch}</style>"
)
_TABLE_OPEN = f'{_TABLE_STYLE}<table class="pdn-t">'


def _esc(value: Any) -> str:
    return html.escape(str(value))


@dataclass(frozen=True)
class ErrorSummary:
    """A failure's text split for reading: the message first, the user's frames, the engine's folded away."""

    message: str
    """The exception line(s) (``ValueError: bad thing``), or the whole text when it is no traceback."""
    user_frames: tuple[str, ...]
    """Frames of the user's code, innermost last (``File "...", line N, in fn`` and its source line)."""
    engine_frames: tuple[str, ...]
    """Frames inside duroxide and pi_duroxide_nb's engine: how the error reached the workflow."""

    @property
    def where(self) -> str:
        """The innermost user frame's first line, or ``""``."""
        return self.user_frames[-1].splitlines()[0].strip() if self.user_frames else ""


_ENGINE_PATHS = ("/duroxide/", "\\duroxide\\", "/pi_duroxide_nb/engine/", "\\pi_duroxide_nb\\engine\\")


def summarize_error(text: str) -> ErrorSummary:
    """Split a stored failure (often a Python traceback) into message, user frames and engine frames."""
    lines = text.rstrip("\n").splitlines()
    if not lines or not lines[0].startswith("Traceback (most recent call last):"):
        return ErrorSummary(text, (), ())
    frames: list[list[str]] = []
    message: list[str] = []  # what follows the last frame: the exception that ended the instance
    in_frame = False
    for line in lines[1:]:
        if line.startswith("  File "):
            frames.append([line])
            message, in_frame = [], True
        elif line.startswith("    ") and in_frame:
            frames[-1].append(line)
        else:
            in_frame = False
            message.append(line)
    user: list[str] = []
    engine: list[str] = []
    for frame in frames:
        (engine if any(p in frame[0] for p in _ENGINE_PATHS) else user).append("\n".join(frame))
    return ErrorSummary("\n".join(message).strip() or text, tuple(user), tuple(engine))


def error_text(text: str) -> str:
    """A failure as plain text: the message, then where in the user's code (engine frames counted, not shown)."""
    summary = summarize_error(text)
    if not summary.user_frames and not summary.engine_frames:
        return text
    parts = [summary.message]
    if summary.where:
        parts.append(f"at {summary.where}")
    if summary.engine_frames:
        parts.append(f"({len(summary.engine_frames)} engine frames folded)")
    return " ".join(parts)


def error_html(text: str) -> str:
    """A failure as HTML: the message in red, the user's frames, the engine's frames folded in a ``details``."""
    summary = summarize_error(text)
    html_parts = [f'<span style="color:#cf222e;white-space:pre-wrap">{_esc(summary.message)}</span>']
    if summary.user_frames:
        frames = _esc("\n".join(summary.user_frames))
        html_parts.append(f'<pre style="margin:2px 0;white-space:pre-wrap;font-size:11px">{frames}</pre>')
    if summary.engine_frames:
        frames = _esc("\n".join(summary.engine_frames))
        html_parts.append(
            f"<details><summary><small>engine frames ({len(summary.engine_frames)})</small></summary>"
            f'<pre style="margin:2px 0;white-space:pre-wrap;font-size:11px">{frames}</pre></details>'
        )
    return "".join(html_parts)


def _json(value: Any, limit: int = 200) -> str:
    if value is None:
        return ""
    try:
        text = json.dumps(value, sort_keys=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_duration(delta: timedelta | None) -> str:
    """A short human duration: ``850 ms``, ``3.2 s``, ``4 min 5 s``, ``2 h 3 min``."""
    if delta is None:
        return ""
    seconds = max(0.0, delta.total_seconds())
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def format_time(when: datetime | None) -> str:
    """``2026-01-02 03:04:05`` UTC, or empty."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if when else ""


def state_duration(state: WorkflowState, now: datetime | None = None) -> timedelta | None:
    """How long the instance ran (until now, while it runs)."""
    if state.created_at is None:
        return None
    if state.status.is_terminal or state.status is WorkflowStatus.CONTINUED_AS_NEW:
        end = state.updated_at or state.created_at
    else:
        end = now or datetime.now(timezone.utc)
    return end - state.created_at


def _status_html(status: WorkflowStatus) -> str:
    colour = _STATUS_COLOURS.get(status, "#57606a")
    return f'<span style="color:{colour};font-weight:600">{_esc(status.value)}</span>'


@dataclass(frozen=True)
class StateView:
    """One instance, displayed: what ``%workflow status`` and ``%workflow wait`` return.

    It reads like the ``WorkflowState`` it shows: ``st = %workflow wait ID`` then
    ``st.output``, ``st.status``, ``st.error``, ``st.model_dump()``; ``st.state`` is the state itself.
    """

    state: WorkflowState

    def __getattr__(self, name: str) -> Any:
        # Only reached for names StateView lacks: every field and method of the state.
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return getattr(self.state, name)
        except AttributeError:
            msg = f"{type(self).__name__!r} (a WorkflowState's view) has no attribute {name!r}"
            raise AttributeError(msg) from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(WorkflowState.model_fields))

    def __repr__(self) -> str:
        s = self.state
        lines = [f"{s.instance_id}  {s.name}  {s.status.value}"]
        if s.custom_status is not None:
            lines.append(f"  custom status: {s.custom_status}")
        if s.status is WorkflowStatus.COMPLETED:
            output = s.output.model_dump(mode="json") if hasattr(s.output, "model_dump") else s.output
            lines.append(f"  output: {_json(output, 500)}")
        if s.error:
            lines.append(f"  error: {error_text(s.error)}")
        if s.blocked:
            lines.append(f"  blocked: {s.blocked}")
        if s.long_history:
            lines.append(f"  {s.long_history}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        s = self.state
        output = s.output.model_dump(mode="json") if hasattr(s.output, "model_dump") else s.output
        rows = [
            ("instance", _esc(s.instance_id)),
            ("workflow", f"{_esc(format_ref(s.name, s.version))}"),
            ("status", _status_html(s.status)),
            ("custom status", _esc(s.custom_status or "")),
            ("created", format_time(s.created_at)),
            ("updated", format_time(s.updated_at)),
            ("duration", format_duration(state_duration(s))),
        ]
        if s.status is WorkflowStatus.COMPLETED:
            rows.append(("output", f"<code>{_esc(_json(output, 2000))}</code>"))
        if s.error:
            rows.append(("error", error_html(s.error)))
        if s.parent_instance_id:
            rows.append(("parent", _esc(s.parent_instance_id)))
        if s.blocked:
            rows.append(("blocked", f'<span style="color:#9a6700">{_esc(s.blocked)}</span>'))
        if s.long_history:
            rows.append(("history", f'<span style="color:#9a6700">{_esc(s.long_history)}</span>'))
        body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
        return f"{_TABLE_OPEN}{body}</table>"


@dataclass(frozen=True)
class StateListView:
    """A listing of instances: what ``%workflow list`` returns."""

    states: tuple[WorkflowState, ...]
    total: int | None = None
    """How many instances matched, when more than ``states`` holds."""

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self) -> Iterator[WorkflowState]:
        return iter(self.states)

    def __getitem__(self, index: int) -> WorkflowState:
        return self.states[index]

    def _more(self) -> str:
        if self.total is None or self.total <= len(self.states):
            return ""
        return f"{len(self.states)} of {self.total} shown (newest first); use --limit N for more"

    def __repr__(self) -> str:
        if not self.states:
            return "no workflow instances"
        rows = [(s.instance_id, s.name, s.status.value, s.custom_status or "") for s in self.states]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
        return "\n".join(lines + ([self._more()] if self._more() else []))

    def _repr_html_(self) -> str:
        more = f"<div><i>{_esc(self._more())}</i></div>" if self._more() else ""
        return instances_table_html(self.states) + more


def instances_table_html(states: Sequence[WorkflowState], *, selected: str | None = None) -> str:
    """An HTML table of instance states (id, workflow, version, status, custom status, times)."""
    if not states:
        return "<i>no workflow instances</i>"
    now = datetime.now(timezone.utc)
    head = "".join(
        f"<th>{h}</th>"
        for h in ("instance", "workflow", "version", "status", "custom status", "created", "updated", "duration")
    )
    rows = []
    for s in states:
        mark = ' style="background:#ddf4ff"' if s.instance_id == selected else ""
        cells = (
            _esc(s.instance_id),
            _esc(s.name),
            f"<small>{_esc(format_version(s.version))}</small>",
            _status_html(s.status),
            _esc(s.custom_status or ""),
            format_time(s.created_at),
            format_time(s.updated_at),
            format_duration(state_duration(s, now)),
        )
        rows.append(f"<tr{mark}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"{_TABLE_OPEN}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _payload(event: HistoryEvent) -> Any:
    for value in (event.input, event.result, event.output, event.data):
        if value is not None:
            return value
    if event.error:
        return error_text(event.error)
    status = event.details.get("status")
    return status


@dataclass(frozen=True)
class HistoryView:
    """An instance's history, displayed with a timeline: what ``%workflow history`` returns."""

    events: tuple[HistoryEvent, ...]

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[HistoryEvent]:
        return iter(self.events)

    def __getitem__(self, index: int) -> HistoryEvent:
        return self.events[index]

    def __repr__(self) -> str:
        if not self.events:
            return "no history"
        # ctx.new_guid()/ctx.utc_now() results differ on every run: left out, so saved outputs compare equal.
        syscalls = {e.event_id: _label(e, "") for e in self.events if (e.name or "").startswith("__duroxide_syscall:")}
        lines = []
        for e in self.events:
            payload = _payload(e)
            text = f"{e.event_id:>3}  {e.kind:<26} {e.name or ''}"
            if e.source_event_id in syscalls and e.kind == "ActivityCompleted":
                text += f"  ({syscalls[e.source_event_id]} result)"
            elif payload is not None:
                text += f"  {_json(payload, 120)}"
            lines.append(text.rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return timeline_html(timeline_bars(self.events)) + history_table_html(self.events)


def history_table_html(events: Sequence[HistoryEvent]) -> str:
    """Every event with its time and payload, as an HTML table."""
    if not events:
        return "<i>no history</i>"
    start = events[0].timestamp
    head = "".join(f"<th>{h}</th>" for h in ("#", "time", "+", "kind", "name", "payload"))
    rows = []
    for e in events:
        payload = _payload(e)
        millis = f"{e.timestamp.microsecond // 1000:03d}"
        rows.append(
            f"<tr{' class=err' if e.error else ''}><td>{e.event_id}</td>"
            f"<td class=nw>{format_time(e.timestamp)}.{millis}</td>"
            f"<td class=nw>{format_duration(e.timestamp - start)}</td>"
            f"<td>{_esc(e.kind)}</td><td>{_esc(e.name or '')}</td>"
            f"<td class=pl><code>{_esc(_json(payload, 300))}</code></td></tr>"
        )
    return f"{_TABLE_OPEN}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# --- timeline ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineBar:
    """One durable task from schedule to completion: a bar of the timeline."""

    kind: str
    """``activity``, ``timer``, ``sub-workflow`` or ``event`` (a wait for a signal)."""
    label: str
    """Activity, sub-workflow or event name (``timer`` for timers)."""
    event_id: int
    """The scheduling event."""
    start: datetime
    end: datetime | None
    """When it completed; ``None`` while it is still open."""
    outcome: str
    """``completed``, ``failed``, ``cancelled`` (the instance ended first) or ``open``."""

    @property
    def duration(self) -> timedelta | None:
        """How long it took, once it ended."""
        return None if self.end is None else self.end - self.start


_SCHEDULES = {
    "ActivityScheduled": "activity",
    "TimerCreated": "timer",
    "SubOrchestrationScheduled": "sub-workflow",
    "ExternalSubscribed": "event",
}
_COMPLETIONS = {
    "ActivityCompleted": "completed",
    "ActivityFailed": "failed",
    "TimerFired": "completed",
    "SubOrchestrationCompleted": "completed",
    "SubOrchestrationFailed": "failed",
}


def _label(event: HistoryEvent, kind: str) -> str:
    name = event.name or ""
    if name.startswith("__duroxide_syscall:"):
        return name.split(":", 1)[1].removesuffix("_ms")
    if name.startswith("__pi_"):
        return "pi." + name[len("__pi_") :]
    return name or kind


_ENDS = frozenset({"OrchestrationCompleted", "OrchestrationFailed", "OrchestrationContinuedAsNew"})


def timeline_bars(events: Sequence[HistoryEvent]) -> list[TimelineBar]:
    """Pair every schedule with its completion: where the instance's time went.

    Activities, timers and sub-workflows pair by ``source_event_id``; a wait for a signal
    pairs with the next event of that name. Unfinished tasks of a running instance have
    ``end=None``; those of an instance that ended (cancelled, failed, continued as new) close at
    its end, as ``cancelled``.
    """
    open_: dict[int, tuple[HistoryEvent, str]] = {}
    waits: dict[str, list[int]] = {}
    ends: dict[int, tuple[datetime, str]] = {}
    finished: datetime | None = None
    for e in events:
        kind = _SCHEDULES.get(e.kind)
        if kind is not None:
            open_[e.event_id] = (e, kind)
            if kind == "event":
                waits.setdefault(e.name or "", []).append(e.event_id)
            continue
        outcome = _COMPLETIONS.get(e.kind)
        if outcome is not None and e.source_event_id in open_:
            ends[e.source_event_id] = (e.timestamp, outcome)
        elif e.kind == "ExternalEvent" and waits.get(e.name or ""):
            ends[waits[e.name or ""].pop(0)] = (e.timestamp, "completed")
        elif e.kind.endswith("Cancelled") and e.source_event_id in open_:
            ends.setdefault(e.source_event_id, (e.timestamp, "cancelled"))
        elif e.kind in _ENDS:
            finished = e.timestamp
    bars = []
    for event_id, (e, kind) in open_.items():
        end, outcome = ends.get(event_id, (None, "open"))
        if end is None and finished is not None:  # the instance ended with the task unfinished
            end, outcome = finished, "cancelled"
        bars.append(TimelineBar(kind, _label(e, kind), event_id, e.timestamp, end, outcome))
    return bars


_TIMELINE_STYLE = (
    "<style>.pdn-tl{margin:4px 0 8px 0;font-size:11px}.pdn-tl .r{display:flex;align-items:center;height:16px}"
    ".pdn-tl .l{width:160px;overflow:hidden;white-space:nowrap}.pdn-tl .t{position:relative;flex:1;height:10px;"
    "background:#f6f8fa}.pdn-tl .b{position:absolute;height:10px}.pdn-tl .d{width:70px;text-align:right}</style>"
)


def timeline_html(bars: Sequence[TimelineBar], *, now: datetime | None = None) -> str:
    """Bars positioned on one time axis, with their durations on hover and at the right."""
    if not bars:
        return ""
    start = min(b.start for b in bars)
    open_end = now or datetime.now(timezone.utc)
    end = max((b.end or open_end) for b in bars)
    span = max((end - start).total_seconds(), 1e-3)
    rows = []
    for b in bars:
        left = (b.start - start).total_seconds() / span * 100
        stop = ((b.end or open_end) - start).total_seconds() / span * 100
        width = min(max(0.4, stop - left), 100 - left)
        colour = "#cf222e" if b.outcome == "failed" else _KIND_COLOURS.get(b.kind, "#57606a")
        took = format_duration(b.duration) if b.end else "open"
        note = " (ended with the instance, unfinished)" if b.outcome == "cancelled" else ""
        fade = ";opacity:.5" if b.end is None or b.outcome == "cancelled" else ""
        label = _esc(b.label)
        tip = f"{_esc(b.kind)} {label}: {took}{note}"
        rows.append(
            f'<div class=r><div class=l>{label}</div><div class=t><div class=b title="{tip}" '
            f'style="left:{left:.2f}%;width:{width:.2f}%;background:{colour}{fade}"></div></div>'
            f"<div class=d>{took}</div></div>"
        )
    total = format_duration(end - start)
    return f"{_TIMELINE_STYLE}<div class=pdn-tl><div>timeline, {total}</div>{''.join(rows)}</div>"


def view(value: Any) -> StateView | StateListView | HistoryView:
    """Wrap a state, a list of states or a history for rich display (what the magics return).

    Example:
        pdn.view(rt.get_workflow(iid))          # HTML in a notebook, stable text in a terminal
        pdn.view(rt.history(iid))               # events and a timeline

    Raises:
        TypeError: ``value`` is none of those.
    """
    if isinstance(value, WorkflowState):
        return StateView(value)
    if isinstance(value, (list, tuple)):
        items = tuple(value)
        if all(isinstance(v, WorkflowState) for v in items):
            return StateListView(items)
        if all(isinstance(v, HistoryEvent) for v in items):
            return HistoryView(items)
    msg = f"pdn.view shows a WorkflowState, a list of them or a history (list of HistoryEvent), not {type(value)!r}."
    raise TypeError(msg)
