"""The live workflow dashboard (ipywidgets): workflows, instances, history timeline, actions."""

from __future__ import annotations

import asyncio
import base64
import html
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets

from ..._errors import PayloadError, PiDuroxideError
from ...engine import WorkflowRuntime, format_ref, format_version
from ...models import HistoryList, WorkflowState, WorkflowStatus
from .._display import (
    StateView,
    format_duration,
    format_time,
    history_table_html,
    state_duration,
    timeline_html,
)
from .._session import kernel_runtime, on_kernel_runtime_stop
from ._controller import DashboardController, DashboardSnapshot, HistorySnapshot
from ._event_form import EventForm
from ._refresher import Refresher
from ._widgets import close_children, close_tree

__all__ = ["WorkflowDashboard", "dashboard"]

_STYLE = """<style>
.pdn-mono, .pdn-mono select, .pdn-mono option { font-family: monospace !important; font-size: 12px; }
.pdn-scroll { max-height: 320px; overflow: auto; }
</style>"""
_ALL = ""


def _cell(text: str, width: int, right: bool = False) -> str:
    text = text if len(text) <= width else text[: width - 1] + "…"
    return f"{text:>{width}}" if right else f"{text:<{width}}"


_COLUMNS = (("instance", 28), ("workflow", 16), ("version", 8), ("status", 14), ("custom status", 18))


def instance_label(state: WorkflowState) -> str:
    """One row of the instance list, in fixed-width columns (no live clock: rows only change with the state)."""
    finished = state.status.is_terminal or state.status is WorkflowStatus.CONTINUED_AS_NEW
    created = format_time(state.created_at)[5:]
    updated = format_time(state.updated_at)[11:]
    duration = format_duration(state_duration(state)) if finished else "…"
    status = state.status.value
    if state.blocked:  # what it waits for says more than "Running"
        status = {"code": "code missing", "waiting": "needs host", "activity": "needs activity"}.get(
            state.blocked.split(" ", 1)[0], "blocked"
        )
    values = (state.instance_id, state.name, format_version(state.version), status, state.custom_status or "")
    head = " ".join(_cell(v, w) for v, (_, w) in zip(values, _COLUMNS, strict=False))
    return f"{head} {_cell(created, 14)} {_cell(updated, 8)} {_cell(duration, 10, right=True)}"


def _header_label() -> str:
    head = " ".join(_cell(name, w) for name, w in _COLUMNS)
    return f"{head} {_cell('created', 14)} {_cell('updated', 8)} {_cell('duration', 10, right=True)}"


def _button(description: str, tooltip: str, style: str = "") -> widgets.Button:
    return widgets.Button(description=description, tooltip=tooltip, button_style=style)


class WorkflowDashboard(widgets.VBox):
    """A live view of a runtime's workflows and instances, with actions.

    Example:
        dash = pdn.dashboard(rt)        # or %workflows
        dash                            # display it; it refreshes itself every second
        dash.close()                    # stops the refresh and closes every widget

    The widgets render snapshots from a ``DashboardController``; the latest ones are in
    ``snapshot`` and ``selected_history``. The refresh runs in one daemon thread that only
    reads the store and updates widget state (never prints); inside a kernel the update is
    handed to the kernel's event loop.
    """

    def __init__(
        self,
        *,
        runtime: WorkflowRuntime,
        page_size: int = 50,
        refresh_interval: float = 1.0,
        live: bool = True,
    ) -> None:
        """Build the dashboard and render a first snapshot.

        Args:
            runtime: The runtime to show.
            page_size: Instances per page.
            refresh_interval: Seconds between refreshes while live.
            live: Refresh in the background (toggle with the Live button).
        """
        self.controller = DashboardController(runtime=runtime, page_size=page_size)
        self.snapshot: DashboardSnapshot | None = None
        self.selected_history: HistorySnapshot | None = None
        self.last_action: str = ""
        """The result of the last action (or its error), as shown in the status line."""
        self.replay_widget: Any = None
        self._interval = refresh_interval
        self._render_lock = threading.RLock()
        self._updating = False
        self._closed = False
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

        self.header = widgets.HTML()
        self.refresh_button = _button("Refresh", "Read the store now")
        self.live_toggle = widgets.ToggleButton(value=live, description="Live", tooltip="Refresh every second")
        self.workflows_html = widgets.HTML()
        self.name_filter = widgets.Dropdown(options=[("all workflows", _ALL)], value=_ALL, description="workflow")
        self.status_filter = widgets.Dropdown(
            options=[("all statuses", _ALL)] + [(s.value, s.value) for s in WorkflowStatus],
            value=_ALL,
            description="status",
        )
        self.prev_button = _button("◀", "Newer instances")
        self.next_button = _button("▶", "Older instances")
        self.page_label = widgets.HTML()
        self.instances_header = widgets.HTML()
        self.instances = widgets.Select(options=[], rows=12, layout=widgets.Layout(width="auto"))
        self.instances.add_class("pdn-mono")
        self.instances_header.add_class("pdn-mono")
        self.detail_html = widgets.HTML()
        self.history_html = widgets.HTML()
        self.history_html.add_class("pdn-scroll")
        self.event_name = widgets.Text(placeholder="event name", description="event")
        self.event_payload = widgets.Textarea(
            placeholder='JSON payload, e.g. {"approved": true}', description="payload"
        )
        self.signal_button = _button("Raise event", "Send the event to the selected instance", "primary")
        self.cancel_button = _button("Cancel", "Cancel the selected instance (asks first)", "danger")
        self.cancel_prompt = widgets.HTML()
        self.cancel_confirm_button = _button("Cancel it", "Yes: stop the instance for good", "danger")
        self.cancel_keep_button = _button("Keep running", "No: leave the instance running")
        self.cancel_box = widgets.HBox(
            [self.cancel_prompt, self.cancel_confirm_button, self.cancel_keep_button],
            layout=widgets.Layout(display="none"),
        )
        self.pending_cancel: str | None = None
        """The instance the cancel confirmation asks about."""
        self.event_form = EventForm(on_send=self._send_form)
        """The form that answers what the selected instance waits for (built from the event's model)."""
        self.replay_button = _button("Replay", "Open the replay stepper on the selected instance")
        self.delete_button = _button(
            "Delete", "Delete the selected instance with its sub-workflows and transcript (asks first)", "danger"
        )
        self.delete_prompt = widgets.HTML()
        self.delete_confirm_button = _button("Delete", "Yes: delete it for good", "danger")
        self.delete_keep_button = _button("Keep", "No: keep the instance")
        self.delete_box = widgets.HBox(
            [self.delete_prompt, self.delete_confirm_button, self.delete_keep_button],
            layout=widgets.Layout(display="none"),
        )
        self.pending_delete: tuple[str, bool] | None = None
        """The instance the confirmation asks about, and whether it still runs (then it is cancelled first)."""
        self.download_html = widgets.HTML()
        self._download_key: tuple[Any, ...] | None = None
        self.start_name = widgets.Dropdown(options=[], description="workflow")
        self.start_input = widgets.Textarea(
            value="{}", description="input", placeholder='JSON input, e.g. {"service": "api"}'
        )
        self.start_button = _button("Start", "Start an instance with this JSON input", "success")
        self.transcript_html = widgets.HTML()
        self.workers_html = widgets.HTML()
        self.status_html = widgets.HTML()
        self.replay_box = widgets.VBox()

        def section(title: str) -> widgets.HTML:
            return widgets.HTML(f"<b>{title}</b>")

        super().__init__(
            children=[
                widgets.HTML(_STYLE),
                widgets.HBox([self.header, self.refresh_button, self.live_toggle]),
                self.status_html,
                section("Workers"),
                self.workers_html,
                section("Registered workflows"),
                self.workflows_html,
                section("Instances"),
                widgets.HBox(
                    [self.name_filter, self.status_filter, self.prev_button, self.page_label, self.next_button]
                ),
                self.instances_header,
                self.instances,
                section("Selected instance"),
                self.detail_html,
                self.event_form,
                widgets.HBox([self.event_name, self.event_payload]),
                widgets.HBox([self.signal_button, self.cancel_button, self.replay_button, self.delete_button]),
                self.cancel_box,
                self.delete_box,
                self.download_html,
                self.history_html,
                self.replay_box,
                section("Start a workflow"),
                widgets.HBox([self.start_name, self.start_input, self.start_button]),
                section("Session transcript"),
                self.transcript_html,
            ]
        )
        self.instances_header.value = f"<pre style='margin:0'>{html.escape(_header_label())}</pre>"
        self.instances.observe(self._on_select, names="value")
        self.name_filter.observe(self._on_filter, names="value")
        self.status_filter.observe(self._on_filter, names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.prev_button.on_click(lambda _: self._go(-1))
        self.next_button.on_click(lambda _: self._go(+1))
        self.signal_button.on_click(lambda _: self._act(self._signal))
        self.cancel_button.on_click(lambda _: self._act(self._ask_cancel))
        self.cancel_confirm_button.on_click(lambda _: self._act(self._cancel))
        self.cancel_keep_button.on_click(lambda _: self._act(self._keep_running))
        self.replay_button.on_click(lambda _: self._act(self._replay))
        self.delete_button.on_click(lambda _: self._act(self._ask_delete))
        self.delete_confirm_button.on_click(lambda _: self._act(self._delete))
        self.delete_keep_button.on_click(lambda _: self._act(self._keep))
        self.start_button.on_click(lambda _: self._act(self._start))
        self.live_toggle.observe(self._on_live, names="value")

        self.refresh()
        self._refresher: Refresher | None = None
        if live:
            self._start_refresher()
        self._unsubscribe: Callable[[], Any] | None = runtime.on_message(lambda _entry: self._poke())
        self._cancel_stop_hook = on_kernel_runtime_stop(self.close)

    def __repr__(self) -> str:
        snap = self.snapshot
        count = snap.runtime.total if snap else 0
        return f"<WorkflowDashboard db={self.controller.runtime.db!r} instances={count} live={self.live}>"

    # --- refresh -----------------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """True while the background refresh runs."""
        return self._refresher is not None and self._refresher.running

    @property
    def refresher(self) -> Refresher | None:
        """The background refresher, while live."""
        return self._refresher

    def _start_refresher(self) -> None:
        if self._refresher is None and not self._closed:
            self._refresher = Refresher(tick=self._tick, interval=self._interval, on_error=self._on_tick_error)
            self._refresher.start()

    def _stop_refresher(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.stop()

    def _poke(self) -> None:
        if self._refresher is not None:
            self._refresher.poke()

    def _on_live(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self._start_refresher()
        else:
            self._stop_refresher()

    def refresh(self) -> None:
        """Read the store and render now (in the calling thread)."""
        snap, history = self._read()
        with self._render_lock:
            self._render(snap, history)

    def _read(self) -> tuple[DashboardSnapshot, HistorySnapshot | None]:
        replay = self.replay_widget
        if replay is not None and not replay.stepper.finished:
            try:
                replay.follow_now()  # a running instance's stepper shows its new steps
            except PiDuroxideError:
                pass  # deleted meanwhile: the stepper keeps what it had
        snap = self.controller.snapshot()
        history = self.selected_history
        selected = self.instances.value
        if selected and (history is None or history.state.instance_id != selected or not _finished(history.state)):
            try:
                history = self.controller.history(selected)
            except PiDuroxideError:
                history = None
        return snap, history

    def _tick(self) -> None:
        # Runs in the refresher thread: read there (the slow part), render where it is safe.
        snap, history = self._read()
        if self._closed or (snap == self.snapshot and history == self.selected_history):
            return
        self._in_ui(self._render_if_open, snap, history)

    def _in_ui(self, update: Callable[..., None], *args: Any) -> None:
        """Run a widget update from the refresher thread on the kernel's loop (in the thread, locked, without one)."""
        loop = self._loop
        if loop is not None and loop.is_running() and not loop.is_closed():
            loop.call_soon_threadsafe(update, *args)
        else:
            with self._render_lock:
                update(*args)

    def _render_if_open(self, snap: DashboardSnapshot, history: HistorySnapshot | None) -> None:
        if self._closed:
            return
        if history is not None and history.state.instance_id != self.instances.value:
            history = self.selected_history  # read for a row the person has since left: keep what select() showed
        self._render(snap, history)

    def _on_tick_error(self, exc: BaseException) -> None:
        self._in_ui(self._show_if_open, f"Refresh failed: {exc}")

    def _show_if_open(self, text: str) -> None:
        if not self._closed:
            self._show(text, error=True)

    # --- rendering -------------------------------------------------------------------------------

    def _render(self, snap: DashboardSnapshot, history: HistorySnapshot | None) -> None:
        self.snapshot = snap
        rt = snap.runtime
        counts = ", ".join(f"{status} {n}" for status, n in rt.counts) or "no instances"
        running = dict(rt.counts).get(WorkflowStatus.RUNNING.value, 0)
        self.header.value = (
            f"<b>Workflows</b> · runtime <b>{html.escape(rt.state)}</b> ({html.escape(rt.engine_mode)}) "
            f"on <code>{html.escape(rt.db)}</code> · <b>{running} running now</b> · "
            f"{rt.total} instances: {html.escape(counts)}"
        )
        for line in rt.code_missing:
            self.header.value += f'<div style="color:#9a6700">⚠ {html.escape(line)}</div>'

        if snap.error:
            self._show(snap.error, error=True)
        self.workflows_html.value = _workflows_html(snap)
        self.workers_html.value = _workers_html(snap)
        names = sorted({w.name for w in snap.workflows} | {s.name for s in snap.instances})
        self._set_options(self.name_filter, [("all workflows", _ALL)] + [(n, n) for n in names])
        self._set_options(self.start_name, [(w.name, w.name) for w in snap.workflows])
        first = snap.page * snap.page_size + 1 if snap.matching else 0
        last = min(snap.matching, (snap.page + 1) * snap.page_size)
        self.page_label.value = f"{first}–{last} of {snap.matching}"
        self.prev_button.disabled = snap.page == 0
        self.next_button.disabled = snap.page + 1 >= snap.pages
        self._set_options(self.instances, [(instance_label(s), s.instance_id) for s in snap.instances])
        self._render_history(history)
        self.transcript_html.value = _transcript_html(snap)

    def _set_options(self, widget: Any, options: list[tuple[str, str]]) -> None:
        """Replace a selection widget's options, keeping the selected value as it was.

        A list (``Select``) with its value gone selects nothing; a dropdown selects its first
        option (ipywidgets leaves it on ``None``, which the browser shows as a blank box).
        """
        if tuple(widget.options) == tuple(options):
            return
        current = widget.value
        self._updating = True
        try:
            with widget.hold_sync():
                widget.options = options
                values = [v for _, v in options]
                if current in values:
                    widget.value = current
                elif isinstance(widget, widgets.Select):
                    widget.index = None
                elif options:
                    widget.index = 0
        finally:
            self._updating = False

    def _render_history(self, history: HistorySnapshot | None) -> None:
        self.selected_history = history
        if history is None:
            self.detail_html.value = "<i>Select an instance to see its history and timeline.</i>"
            self.history_html.value = ""
            self.event_form.show(None, ())
            self._render_download(None)
            return
        self.event_form.show(history.state.instance_id, history.waiting)
        bars = timeline_html(history.bars)
        state = history.state
        if state.history_events is None:  # the dashboard has the events at hand: say when they are many
            state = state.model_copy(update={"history_events": len(history.events)})
        self.detail_html.value = StateView(state)._repr_html_() + bars
        self.history_html.value = history_table_html(history.events)
        self._render_download(history)

    def _render_download(self, history: HistorySnapshot | None) -> None:
        """A link that saves the selected history as JSON (``rt.history(id).to_json()``), made in the kernel."""
        if history is None:
            self._download_key, self.download_html.value = None, ""
            return
        last = history.events[-1].event_id if history.events else 0
        key = (history.state.instance_id, history.state.execution_id, len(history.events), last)
        if key == self._download_key:
            return  # the same events: keep the link instead of encoding them again
        self._download_key = key
        self.download_html.value = download_link_html(history.state.instance_id, HistoryList(history.events))

    # --- events ------------------------------------------------------------------------------------

    def _on_select(self, change: dict[str, Any]) -> None:
        if self._updating:
            return
        self.select(change["new"])

    def select(self, instance_id: str | None) -> None:
        """Show an instance's state, history and timeline (``None`` clears the selection)."""
        if self.pending_delete is not None and self.pending_delete[0] != instance_id:
            self._hide_delete()  # a confirmation is for the row it was asked on
        if self.pending_cancel is not None and self.pending_cancel != instance_id:
            self._hide_cancel()
        if instance_id is None and self.instances.value is not None:
            self._updating = True
            try:
                self.instances.index = None
            finally:
                self._updating = False
        if instance_id is not None and self.instances.value != instance_id:
            if instance_id not in [v for _, v in self.instances.options]:
                self.refresh()  # started since the last refresh: the list may hold it now
            self._updating = True
            try:
                if instance_id in [v for _, v in self.instances.options]:
                    self.instances.value = instance_id
                else:  # on another page: select no row, or the refresh would show that row instead
                    self.instances.index = None
            finally:
                self._updating = False
        history = None
        if instance_id:
            try:
                history = self.controller.history(instance_id)
            except PiDuroxideError as exc:
                self._show(str(exc), error=True)
        with self._render_lock:
            self._render_history(history)

    def _on_filter(self, change: dict[str, Any]) -> None:
        if self._updating:
            return
        self.controller.set_filters(name=self.name_filter.value or None, status=self.status_filter.value or None)
        self.refresh()

    def _go(self, step: int) -> None:
        self.controller.set_page(self.controller.page + step)
        self.refresh()

    def _act(self, action: Callable[[], str]) -> None:
        try:
            self._show(action())
        except PiDuroxideError as exc:
            self._show(str(exc), error=True)
        self.refresh()

    def _show(self, text: str, *, error: bool = False) -> None:
        self.last_action = text
        colour = "#cf222e" if error else "#1a7f37"
        self.status_html.value = f'<span style="color:{colour}">{html.escape(text)}</span>' if text else ""

    def _selected(self) -> str:
        history = self.selected_history
        return history.state.instance_id if history is not None else (self.instances.value or "")

    def _start(self) -> str:
        iid = self.controller.start(self.start_name.value or "", self.start_input.value)
        return f"Started {self.start_name.value!r} as {iid}."

    def _signal(self) -> str:
        iid = self._selected()
        self.controller.signal(iid, self.event_name.value, self.event_payload.value)
        return f"Sent {self.event_name.value.strip()!r} to {iid}."

    def _send_form(self, event_name: str, data: Any) -> str:
        iid = self._selected()
        try:
            self.controller.send_event(iid, event_name, data)
        except PiDuroxideError as exc:
            self._show(str(exc), error=True)
            raise
        self._show(f"Sent {event_name!r} to {iid}.")
        self.refresh()
        return self.last_action

    def _ask_cancel(self) -> str:
        iid = self._selected()
        if not iid:
            raise PayloadError("Select an instance to cancel first.")
        history = self.selected_history
        if history is not None and history.state.instance_id == iid and history.state.status.is_terminal:
            msg = f"{iid} has already finished ({history.state.status.value}): there is nothing to cancel."
            raise PayloadError(msg)
        self.cancel_prompt.value = (
            f"Cancel <b>{html.escape(iid)}</b>? It stops for good (as Terminated); its history is kept."
        )
        self.pending_cancel = iid
        self.cancel_box.layout.display = "flex"
        return f"Confirm to cancel {iid}."

    def _hide_cancel(self) -> None:
        self.pending_cancel = None
        self.cancel_box.layout.display = "none"

    def _keep_running(self) -> str:
        pending = self.pending_cancel
        self._hide_cancel()
        return f"Kept {pending} running." if pending else ""

    def _cancel(self) -> str:
        iid, self.pending_cancel = self.pending_cancel, None
        self._hide_cancel()
        if iid is None:
            raise PayloadError("Nothing to cancel: click Cancel on a selected instance first.")
        self.controller.cancel(iid)
        return f"Cancel requested for {iid}."

    def _ask_delete(self) -> str:
        iid = self._selected()
        if not iid:
            raise PayloadError("Select an instance to delete first.")
        history = self.selected_history
        running = history is not None and history.state.instance_id == iid and not history.state.status.is_terminal
        what = f"<b>{html.escape(iid)}</b>, its sub-workflows, history, KV entries and transcript entries"
        if running:
            self.delete_prompt.value = f"{what} will be deleted for good. It is still running: it is cancelled first."
            self.delete_confirm_button.description = "Cancel and delete"
        else:
            self.delete_prompt.value = f"Delete {what}? This cannot be undone."
            self.delete_confirm_button.description = "Delete"
        self.pending_delete = (iid, running)
        self.delete_box.layout.display = "flex"
        return f"Confirm to delete {iid}."

    def _hide_delete(self) -> None:
        self.pending_delete = None
        self.delete_box.layout.display = "none"

    def _delete(self) -> str:
        pending, self.pending_delete = self.pending_delete, None
        self._hide_delete()
        if pending is None:
            raise PayloadError("Nothing to delete: click Delete on a selected instance first.")
        iid, running = pending
        result = self.controller.delete(iid, force=running)
        self.select(None)
        return str(result)

    def _keep(self) -> str:
        pending = self.pending_delete
        self._hide_delete()
        return f"Kept {pending[0]}." if pending else ""

    def _replay(self) -> str:
        iid = self._selected()
        widget = self.controller.replay(iid)
        old, self.replay_widget = self.replay_widget, widget
        self.replay_box.children = (widget,) if isinstance(widget, widgets.Widget) else ()
        if isinstance(old, widgets.Widget):
            close_tree(old, set())
        return f"Replaying {iid}."

    # --- closing ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the refresh and close every widget of the dashboard."""
        if self._closed:
            return
        self._closed = True
        self._stop_refresher()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._cancel_stop_hook()
        seen = {id(self)}
        close_children(self, seen)
        if isinstance(self.replay_widget, widgets.Widget):  # not a trait: close_children does not see it
            close_tree(self.replay_widget, seen)
        super().close()


def _finished(state: WorkflowState) -> bool:
    return state.status.is_terminal


def _table_html(rows: Sequence[tuple[str, ...]]) -> str:
    """A borderless table of cells that are already HTML (escape the text in them first)."""
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table style='font-size:12px'>{body}</table>"


def _workflows_html(snap: DashboardSnapshot) -> str:
    if not snap.workflows:
        return "<i>No workflows registered in this kernel yet (%%workflow NAME or pdn.register_workflow).</i>"
    rows = [
        (
            f"<b>{html.escape(w.name)}</b>",
            f"{len(w.versions)} version{'s' if len(w.versions) != 1 else ''} "
            f"<small>(newest {html.escape(format_ref(w.name, w.versions[-1]) if w.versions else '')})</small>",
            html.escape(w.description or ""),
        )
        for w in snap.workflows
    ]
    return _table_html(rows)


def _workers_html(snap: DashboardSnapshot) -> str:
    here = {
        "client": "this kernel is a client only: nothing runs the work until a worker starts",
        "stopped": "this kernel's runtime is stopped",
    }.get(snap.runtime.engine_mode, "this kernel runs the work itself")
    if not snap.workers:
        return (
            f"<i>No worker processes ({html.escape(here)}). Start some with "
            "<code>python -m pi_duroxide_nb worker --db STORE --module my_workflows.py</code>.</i>"
        )
    now = snap.taken_at
    rows = [
        (
            f"<code>{html.escape(w.worker_id)}</code>",
            f"{html.escape(w.host)} pid {w.pid}",
            f"concurrency {w.concurrency}",
            f"seen {max(0.0, (now - w.last_seen).total_seconds()):.0f} s ago, up {format_duration(now - w.started_at)}",
            html.escape(", ".join(w.workflows) or "no workflows"),
        )
        for w in snap.workers
    ]
    n = len(snap.workers)
    head = f"{n} live worker{'s' if n != 1 else ''}; {html.escape(here)}."
    return f"<div>{head}</div>{_table_html(rows)}"


def _transcript_html(snap: DashboardSnapshot) -> str:
    if not snap.transcript:
        return "<i>No messages yet (ctx.pi.send_message).</i>"
    rows = [
        (
            format_time(m.timestamp),
            f"{html.escape(m.workflow_name)} <small>{html.escape(m.instance_id)}</small>",
            html.escape(m.content),
        )
        for m in snap.transcript
    ]
    return f"<div class='pdn-scroll'>{_table_html(rows)}</div>"


_DOWNLOAD_LIMIT = 5_000_000
"""Histories whose JSON is larger are not put in a link (it would travel with every widget update)."""


def download_link_html(instance_id: str, events: HistoryList) -> str:
    """An HTML link whose ``data:`` URL holds the history JSON; the browser saves it on click."""
    text = events.to_json()
    if len(text) > _DOWNLOAD_LIMIT:
        return (
            f"<i>The history is {len(text) / 1e6:.1f} MB of JSON, too large for a link here: save it with "
            f"<code>rt.history({html.escape(repr(instance_id))}).to_json()</code>.</i>"
        )
    filename = re.sub(r"[^\w.-]+", "_", instance_id) + ".history.json"
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return (
        f'<a download="{html.escape(filename)}" href="data:application/json;base64,{data}" '
        f'title="rt.history(id).to_json(); pdn.ReplayHistory.load(path) replays it">⬇ download history JSON</a> '
        f"<small>({len(events)} events)</small>"
    )


def dashboard(
    runtime: WorkflowRuntime | None = None, *, page_size: int = 50, refresh_interval: float = 1.0, live: bool = True
) -> WorkflowDashboard:
    """The live dashboard of a runtime (the kernel's by default); the Python twin of ``%workflows``.

    Example:
        pdn.dashboard()          # in a notebook cell: shows and refreshes itself
    """
    return WorkflowDashboard(
        runtime=runtime if runtime is not None else kernel_runtime(),
        page_size=page_size,
        refresh_interval=refresh_interval,
        live=live,
    )
