"""The replay stepper widget (ipywidgets): step through a history with the code beside it.

The widget renders ``ReplayStep`` snapshots from a ``ReplayStepper`` and never touches the
engine: buttons and the slider move the stepper, and the view re-renders the snapshot.
"""

from __future__ import annotations

import asyncio
import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ...engine import format_ref
from ...replay import ReplayStep, ReplayStepper
from ._refresher import Refresher
from ._widgets import close_children

if TYPE_CHECKING:
    from ...engine import WorkflowRuntime

__all__ = ["ReplayWidget", "replay_html", "replay_widget", "source_html"]

_STYLE = """<style>
.pdn-replay pre { margin: 0; }
.pdn-replay .widget-html-content { line-height: 1.4; }
.pdn-replay .pdn-pane, .pdn-replay .pdn-pane .widget-html,
.pdn-replay .pdn-pane .widget-html-content { min-width: 0; max-width: 100%; }
.pdn-replay .pdn-src { font-family: monospace; font-size: 12px; max-height: 360px; overflow: auto;
  border: 1px solid #ddd; padding: 2px 0; line-height: 1.5; }
.pdn-replay .pdn-line { white-space: pre; padding: 0 6px; }
.pdn-replay .pdn-current { background: #fff3b0; font-weight: bold; }
.pdn-replay table { border-collapse: collapse; font-size: 12px; }
.pdn-replay td, .pdn-replay th { border-bottom: 1px solid #eee; padding: 1px 6px; text-align: left;
  vertical-align: top; font-family: monospace; overflow-wrap: anywhere; }
.pdn-replay th, .pdn-replay td.pdn-nw { white-space: nowrap; overflow-wrap: normal; }
.pdn-replay .pdn-badge { padding: 1px 6px; border-radius: 3px; color: white; font-size: 11px; }
.pdn-replay .pdn-divergence { border: 2px solid #c62828; background: #ffebee; padding: 6px; margin: 4px 0; }
.pdn-replay .pdn-warning { border: 1px solid #ef6c00; background: #fff3e0; padding: 4px 6px; margin: 4px 0; }
</style>"""

_BADGES = {
    "replayed": ("#2e7d32", "from history"),
    "waiting": ("#1565c0", "scheduled, no result yet"),
    "new": ("#6a1b9a", "beyond history: would run live"),
    "end": ("#455a64", "end"),
    "divergence": ("#c62828", "nondeterminism"),
}


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def source_html(source: str | None, first_line: int, current: int | None) -> str:
    """The workflow's source with line numbers, the paused line highlighted."""
    if not source:
        return "<i>source not available</i>"
    rows = []
    for offset, text in enumerate(source.splitlines()):
        number = first_line + offset
        css = "pdn-line pdn-current" if number == current else "pdn-line"
        rows.append(f'<div class="{css}">{number:>4}  {_esc(text)}</div>')
    return f'<div class="pdn-src">{"".join(rows)}</div>'


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]], nowrap: tuple[str, ...] = ()) -> str:
    if not rows:
        return "<i>none</i>"
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    css = ["<td class=pdn-nw>" if h in nowrap else "<td>" for h in header]
    body = "".join(
        "<tr>" + "".join(f"{css[i]}{_esc(_clip(str(c)))}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def replay_html(step: ReplayStep | None, stepper: ReplayStepper) -> str:
    """The details of one snapshot: task, value sent back, matched events, state, locals, divergence."""
    if step is None:
        return "<i>Press step to run the code up to its first yield.</i>"
    color, label = _BADGES.get(step.status, ("#455a64", step.status))
    parts = [
        f'<b>Step {step.index}</b> <span class="pdn-badge" style="background:{color}">{_esc(label)}</span>',
    ]
    if step.task is not None:
        parts.append(f"<div>yielded <code>{_esc(_clip(step.task.describe()))}</code>")
        if step.function:
            parts.append(f" at line {step.line} in <code>{_esc(step.function)}</code>")
        parts.append("</div>")
    if step.error is not None:
        parts.append(f'<div>thrown back: <code style="color:#c62828">{_esc(_clip(step.error))}</code></div>')
    elif step.status == "replayed" and step.kind == "yield":
        parts.append(f"<div>sent back: <code>{_esc(_clip(repr(step.value)))}</code></div>")
    if step.outcome is not None:
        out = step.outcome
        text = {
            "completed": f"returned {out.output_text}",
            "failed": f"raised {out.error}",
            "continued_as_new": f"continued as new with {out.continued_input}",
        }.get(out.status, out.status)
        parts.append(f"<div>code ended: <code>{_esc(_clip(text))}</code></div>")
    if step.pending:
        parts.append("<div>would run next (live): " + ", ".join(f"<code>{_esc(p)}</code>" for p in step.pending))
        parts.append("</div>")
    if step.divergence is not None:
        d = step.divergence
        expected = d.expected.describe() if d.expected is not None else "nothing"
        parts.append(
            '<div class="pdn-divergence"><b>Nondeterminism: '
            + _esc(d.reason)
            + "</b>"
            + _table(("history (expected)", "code (actual)"), [(expected, d.actual or "nothing")])
            + f"<div><small>engine: {_esc(_clip(d.engine_message, 400))}</small></div></div>"
        )
    parts.append("<h4>History events matched</h4>")
    parts.append(
        _table(
            ("id", "kind", "from", "name", "payload", "time"),
            [
                (
                    e.event_id,
                    e.kind,
                    e.source_event_id if e.source_event_id is not None else "",
                    e.name or "",
                    e.input_text if e.input_text is not None else (e.payload_text or e.error or ""),
                    e.timestamp.strftime("%H:%M:%S.%f")[:-3] if e.timestamp else "",
                )
                for e in step.events
            ],
            nowrap=("id", "kind", "from", "name", "time"),
        )
    )
    parts.append("<h4>Locals</h4>")
    parts.append(_table(("name", "value"), list(step.locals.items())))
    state_rows: list[tuple[Any, ...]] = [("custom status", step.custom_status)]
    state_rows += [(f"kv {k}", v) for k, v in step.kv.items()]
    parts.append("<h4>State so far</h4>" + _table(("", "value"), state_rows))
    if step.traces:
        parts.append("<h4>Traces</h4>" + _table(("message",), [(t,) for t in step.traces]))
    return "".join(parts)


class ReplayWidget(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types
    """Step through an instance's history: first / back / step / run to end, a slider, the code.

    Example:
        ReplayWidget(pdn.ReplayStepper(rt, iid))     # or replay_widget(rt, iid)
    """

    def __init__(self, stepper: ReplayStepper, *, follow: float | None = None) -> None:
        """Build the widget on a stepper.

        Args:
            stepper: The stepper to show.
            follow: For a running instance, re-read its history every ``follow`` seconds (new
                steps appear; the current step stays). ``None``: only when ``follow_now()``
                is called (the dashboard calls it on its refresh).
        """
        self.stepper = stepper
        self._lock = threading.RLock()
        self._total = stepper.total
        self.title = widgets.HTML(self._title_html())
        self.first_button = widgets.Button(description="⇤ first", tooltip="Go to step 1")
        self.back_button = widgets.Button(description="◀ back", tooltip="Re-run the code up to the previous step")
        self.step_button = widgets.Button(description="step ▶", tooltip="Run the code to its next yield")
        self.end_button = widgets.Button(description="run to end ⇥", tooltip="Step until the last step")
        self.slider = widgets.IntSlider(value=0, min=0, max=self._total, description="step", continuous_update=False)
        self.source = widgets.HTML()
        self.details = widgets.HTML()
        self.verdict = widgets.HTML(self._verdict_html())
        self.first_button.on_click(lambda _b: self._move(self.stepper.first))
        self.back_button.on_click(lambda _b: self._move(self.stepper.back))
        self.step_button.on_click(lambda _b: self._move(self.stepper.step))
        self.end_button.on_click(lambda _b: self._move(self.stepper.run_to_end))
        self.slider.observe(self._on_slider, names="value")
        controls = widgets.HBox([self.first_button, self.back_button, self.step_button, self.end_button, self.slider])
        self._source, self._source_first_line = stepper.source, stepper.source_first_line
        # Side by side when there is room; in a narrow notebook (a file browser open) the details go
        # below the source instead of squeezing both. Long lines scroll inside their pane.
        panes = [
            widgets.VBox([pane], layout=widgets.Layout(flex="1 1 380px", min_width="0", width="auto"))
            for pane in (self.source, self.details)
        ]
        for pane in panes:
            pane.add_class("pdn-pane")
        body = widgets.HBox(panes, layout=widgets.Layout(flex_flow="row wrap", width="100%"))
        super().__init__([self.title, self.verdict, controls, body])
        self.add_class("pdn-replay")
        self._poll: Refresher | None = None
        self._render()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        if follow is not None and not stepper.finished:
            self._poll = Refresher(tick=self._poll_tick, interval=follow, on_error=lambda _exc: None)
            self._poll.start()

    def _title_html(self) -> str:
        stepper = self.stepper
        history = stepper.history
        ref = format_ref(stepper.definition.name, stepper.definition.version)
        live = "" if stepper.finished else " · <i>running: follows new events</i>"
        return (
            f"{_STYLE}<b>Replay</b> <code>{_esc(history.workflow_name)}</code>"
            f" instance <code>{_esc(history.instance_id)}</code>"
            f" execution {history.execution_id} · <code>{_esc(ref)}</code>"
            f" · {len(history)} events · {self._total} steps{live}"
        )

    @property
    def following(self) -> bool:
        """True while the widget's own poll re-reads a running instance's history."""
        return self._poll is not None and self._poll.running

    def follow_now(self) -> bool:
        """Re-read the history of a running instance and show new steps, keeping the current one.

        Returns True when the history grew. Safe from a background thread: the reading happens
        there, the widget update on the kernel's loop.
        """
        with self._lock:
            grew = self.stepper.reload()
            if grew:
                self._total = self.stepper.total
        if grew:
            self._in_ui(self._show_new_steps)
        if self.stepper.finished and self._poll is not None:
            self._poll.stop(timeout=0)
        return grew

    def _poll_tick(self) -> None:
        self.follow_now()

    def _in_ui(self, update: Any) -> None:
        loop = self._loop
        in_thread = threading.current_thread() is not threading.main_thread()
        if in_thread and loop is not None and loop.is_running() and not loop.is_closed():
            loop.call_soon_threadsafe(update)
        else:
            with self._lock:
                update()

    def _show_new_steps(self) -> None:
        self.title.value = self._title_html()
        self.slider.max = self._total
        self.verdict.value = self._verdict_html()
        self._render()

    def __repr__(self) -> str:
        return f"<ReplayWidget {self.stepper!r}>"

    @property
    def step(self) -> ReplayStep | None:
        """The snapshot shown."""
        return self.stepper.current

    def _verdict_html(self) -> str:
        parts = []
        divergence = self.stepper.divergence
        if divergence is not None:
            parts.append(
                f'<div class="pdn-divergence"><b>This code diverges from the history at step {divergence.step}:'
                f"</b> {_esc(divergence.message)}</div>"
            )
        for warning in self.stepper.warnings:
            parts.append(f'<div class="pdn-warning">{_esc(warning.message)}</div>')
        return "".join(parts)

    def _move(self, action: Any) -> None:
        with self._lock:  # the follow poll may be reloading the stepper in its thread
            try:
                action()
            except Exception as exc:  # at the first step "back" has nowhere to go: say so, keep the view
                self.details.value = f"<i>{_esc(exc)}</i>" + replay_html(self.stepper.current, self.stepper)
                return
            self._render()

    def _on_slider(self, change: dict[str, Any]) -> None:
        target = int(change["new"])
        if target >= 1 and target != self.stepper.index:
            self._move(lambda: self.stepper.goto(target))

    def _render(self) -> None:
        step = self.stepper.current
        self.slider.value = step.index if step is not None else 0
        self.back_button.disabled = step is None or step.index <= 1
        self.step_button.disabled = self.end_button.disabled = self.stepper.done
        self.source.value = source_html(self._source, self._source_first_line, step.line if step is not None else None)
        self.details.value = replay_html(step, self.stepper)

    def close(self) -> None:
        """Close the widget and every widget it holds (children, layouts, styles): no comms left behind."""
        poll, self._poll = self._poll, None
        if poll is not None:
            poll.stop()
        close_children(self, {id(self)})
        super().close()


def replay_widget(
    rt: WorkflowRuntime,
    instance_id: str,
    *,
    workflow: Any = None,
    execution: int | None = None,
    follow: float | None = 1.0,
) -> ReplayWidget:
    """The replay stepper widget on an instance (``%workflow replay ID`` and the dashboard's Replay button).

    Args:
        rt: The runtime whose store holds the instance.
        instance_id: The instance to replay.
        workflow: Replay this code instead of the version the instance started with (an edited cell).
        execution: Which execution (after continue-as-new); the current one by default.
        follow: For a running instance, re-read its history this often (seconds; None: never).
    """
    return ReplayWidget(ReplayStepper(rt, instance_id, workflow=workflow, execution=execution), follow=follow)
