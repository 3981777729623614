"""The dashboard widget, headless: build it, drive it, assert on its state; no leaked comms."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import pi_duroxide_nb as pdn
from pi_duroxide_nb.notebook.ui import DashboardController
from tests.conftest import wait_until


@pytest.fixture
def waiting(registry) -> Any:
    registry.register_activity("work", lambda ctx, x: x * 2)

    @registry.register_workflow("approve", description="Waits for a decision")
    def approve(ctx, input):
        doubled = yield ctx.schedule_activity("work", input["n"])
        ctx.set_custom_status("waiting")
        decision = yield ctx.wait_for_event("decision")
        return {"n": doubled, "decision": decision}

    return approve


def start_waiting(rt: pdn.WorkflowRuntime, instance_id: str, n: int = 1) -> str:
    rt.start_workflow("approve", {"n": n}, instance_id=instance_id)
    wait_until(lambda: rt.get_workflow(instance_id).custom_status == "waiting")
    return instance_id


def test_snapshot_pages_filters_and_counts(rt, waiting, iid, no_leaked_comms) -> None:
    ids = [start_waiting(rt, f"page-{i}", i) for i in range(5)]
    rt.signal_workflow(ids[0], "decision", "yes")
    rt.wait_for_workflow(ids[0], timeout=30)
    controller = DashboardController(runtime=rt, page_size=2)
    snap = controller.snapshot()
    assert [s.instance_id for s in snap.instances] == ["page-4", "page-3"]  # newest first
    assert snap.matching == 5 and snap.pages == 3
    assert dict(snap.runtime.counts) == {"Running": 4, "Completed": 1} and snap.runtime.total == 5
    assert [w.name for w in snap.workflows] == ["approve"] and snap.workflows[0].description == "Waits for a decision"
    controller.set_page(2)
    assert [s.instance_id for s in controller.snapshot().instances] == ["page-0"]
    controller.set_page(99)  # clamped to the last page
    assert controller.snapshot().page == 2
    controller.set_filters(status="Completed")
    snap = controller.snapshot()
    assert [s.instance_id for s in snap.instances] == ["page-0"] and snap.matching == 1
    controller.set_filters(name="other")
    assert controller.snapshot().instances == () and controller.snapshot().matching == 0

    # The same through the widgets: header, workflows section, pager buttons and filter dropdowns.
    dash = pdn.dashboard(rt, page_size=2, live=False)
    try:
        assert "running" in dash.header.value and rt.db in dash.header.value
        assert "5 instances: Running 4, Completed 1" in dash.header.value
        assert "approve" in dash.workflows_html.value and "1 version " in dash.workflows_html.value
        assert "Waits for a decision" in dash.workflows_html.value

        def shown() -> list[str]:
            return [v for _, v in dash.instances.options]

        assert shown() == ["page-4", "page-3"] and dash.page_label.value == "1–2 of 5"
        assert dash.prev_button.disabled and not dash.next_button.disabled
        dash.next_button.click()
        assert shown() == ["page-2", "page-1"] and dash.page_label.value == "3–4 of 5"
        dash.next_button.click()
        assert shown() == ["page-0"] and dash.next_button.disabled and not dash.prev_button.disabled
        dash.status_filter.value = "Completed"  # a filter goes back to page 1
        assert shown() == ["page-0"] and dash.page_label.value == "1–1 of 1"
        dash.status_filter.value = ""
        assert ("approve", "approve") in dash.name_filter.options
        dash.name_filter.value = "approve"
        assert shown() == ["page-4", "page-3"] and dash.page_label.value == "1–2 of 5"
    finally:
        dash.close()


def test_dashboard_selection_shows_history_and_timeline(rt, waiting, no_leaked_comms) -> None:
    first = start_waiting(rt, "sel-1")
    dash = pdn.dashboard(rt, live=False)
    try:
        assert [v for _, v in dash.instances.options] == [first]
        assert dash.instances.value is None and dash.selected_history is None
        # What the front end sends when a row is clicked: a comm "update" of the Select's index.
        dash.instances._handle_msg({"content": {"data": {"method": "update", "state": {"index": 0}}}, "buffers": []})
        assert dash.instances.value == first
        history = dash.selected_history
        assert history is not None and history.state.instance_id == first
        assert [e.kind for e in history.events][:3] == [
            "OrchestrationStarted",
            "ActivityScheduled",
            "ActivityCompleted",
        ]
        assert [(b.kind, b.label, b.outcome) for b in history.bars] == [
            ("activity", "work", "completed"),
            ("event", "decision", "open"),
        ]
        # What the person sees: the state, the timeline bars, and every event with its payload.
        assert "sel-1" in dash.detail_html.value and "timeline" in dash.detail_html.value
        assert dash.detail_html.value.count("class=r>") == 2
        table = dash.history_html.value
        assert all(kind in table for kind in ("OrchestrationStarted", "ActivityScheduled", "ExternalSubscribed"))
        assert "<code>{&quot;n&quot;: 1}</code>" in table  # the workflow's input, as JSON
        second = start_waiting(rt, "sel-2")
        dash.refresh()
        assert [v for _, v in dash.instances.options] == [second, first]
        assert dash.instances.value == first  # new rows do not move the selection
        # A background read for the old row that lands after the person clicked another one
        # does not bring the old row's history back.
        late = dash._read()
        dash.instances.value = second
        dash._render_if_open(*late)
        assert dash.selected_history is not None and dash.selected_history.state.instance_id == second
        assert dash.live is False and "live=False" in repr(dash)
    finally:
        dash.close()


def test_dashboard_actions_validate_before_sending(rt, waiting, no_leaked_comms) -> None:
    instance = start_waiting(rt, "act-1")
    dash = pdn.dashboard(rt, live=False)
    try:
        assert dash.start_name.value == "approve"  # preselected: a blank dropdown would start nothing
        dash.start_input.value = '{"n": 2,}'
        # A click as the front end sends it.
        dash.start_button._handle_msg(
            {"content": {"data": {"method": "custom", "content": {"event": "click"}}}, "buffers": []}
        )
        assert "not valid JSON" in dash.last_action and "line 1, column 9" in dash.last_action
        assert rt.count_workflows() == {pdn.WorkflowStatus.RUNNING: 1}  # nothing reached the store

        dash.start_input.value = '{"n": 2}'
        dash.start_button.click()
        assert dash.last_action.startswith("Started 'approve' as ")
        assert sum(rt.count_workflows().values()) == 2 and dash.snapshot.runtime.total == 2

        dash.select(instance)
        dash.event_name.value = "decision"
        dash.event_payload.value = "{approve}"
        dash.signal_button.click()
        assert "not valid JSON" in dash.last_action
        assert rt.get_workflow(instance).status is pdn.WorkflowStatus.RUNNING
        dash.event_payload.value = '{"ok": true}'
        dash.signal_button.click()
        assert dash.last_action == "Sent 'decision' to act-1."
        assert rt.wait_for_workflow(instance, timeout=30).output == {"n": 2, "decision": {"ok": True}}

        other = start_waiting(rt, "act-2")
        dash.refresh()
        dash.select(other)
        dash.cancel_button.click()  # asks first
        assert dash.last_action == "Confirm to cancel act-2." and dash.cancel_box.layout.display == "flex"
        assert "act-2" in dash.cancel_prompt.value
        dash.cancel_keep_button.click()
        assert dash.last_action == "Kept act-2 running." and dash.cancel_box.layout.display == "none"
        assert rt.get_workflow(other).status is pdn.WorkflowStatus.RUNNING
        dash.cancel_button.click()
        dash.cancel_confirm_button.click()
        assert dash.last_action == "Cancel requested for act-2."
        state = rt.wait_for_workflow(other, timeout=30)
        assert state.status is pdn.WorkflowStatus.TERMINATED and "cancel" in (state.error or "")

        dash.replay_button.click()  # the hook opens the replay stepper on the selected instance
        assert dash.last_action == "Replaying act-2."
        assert dash.replay_widget.stepper.history.instance_id == other
        assert dash.replay_box.children == (dash.replay_widget,)  # closed with the dashboard below
        twin = pdn.replay_widget(rt, other)  # the Python twin of %workflow replay
        try:
            assert twin.stepper.history.instance_id == other and twin.stepper.total > 0
        finally:
            twin.close()
    finally:
        dash.close()


def test_dashboard_refreshes_itself_and_close_stops_it(rt, waiting, no_leaked_comms) -> None:
    dash = pdn.dashboard(rt, refresh_interval=0.05)
    refresher = dash.refresher
    assert dash.live and refresher is not None
    instance = start_waiting(rt, "live-1")  # started behind the dashboard's back
    wait_until(lambda: instance in [v for _, v in dash.instances.options])
    dash.instances.value = instance
    rt.signal_workflow(instance, "decision", 1)
    # The selected instance's history follows it to completion without a click.
    wait_until(lambda: dash.selected_history is not None and dash.selected_history.state.status.is_terminal)
    dash.live_toggle.value = False
    assert not dash.live and not refresher.running
    dash.live_toggle.value = True
    assert dash.live
    dash.close()
    assert not dash.live and dash.refresher is None
    dash.close()  # twice is fine


def test_background_updates_go_through_the_kernel_loop(rt, waiting, no_leaked_comms) -> None:
    rendered_on: list[str] = []

    async def scenario() -> None:
        dash = pdn.dashboard(rt, refresh_interval=0.05)
        for name in ("_render", "_show"):  # every widget update goes through one of these
            original = getattr(dash, name)

            def spy(*args: Any, _original: Any = original, **kwargs: Any) -> None:
                rendered_on.append(threading.current_thread().name)
                _original(*args, **kwargs)

            setattr(dash, name, spy)
        try:
            instance = "loop-1"
            await asyncio.to_thread(start_waiting, rt, instance)
            # The loop stays free while we wait in a thread; the render runs on it.
            await asyncio.to_thread(wait_until, lambda: instance in [v for _, v in dash.instances.options])

            def broken() -> Any:
                raise RuntimeError("store unreachable")

            dash.controller.snapshot = broken  # type: ignore[method-assign]
            await asyncio.to_thread(wait_until, lambda: "store unreachable" in dash.last_action)
        finally:
            dash.close()

    asyncio.run(scenario())
    assert rendered_on and set(rendered_on) == {threading.main_thread().name}


def test_refresh_errors_are_shown_not_printed(rt, waiting, capsys, no_leaked_comms) -> None:
    dash = pdn.dashboard(rt, refresh_interval=0.05)
    try:

        def broken() -> Any:
            raise RuntimeError("store unreachable")

        dash.controller.snapshot = broken  # type: ignore[method-assign]
        wait_until(lambda: "store unreachable" in dash.last_action)
        assert dash.live
    finally:
        dash.close()
    assert capsys.readouterr().out == ""


def test_transcript_section_updates_live(rt, iid, waiting, no_leaked_comms) -> None:
    @rt.registry.register_workflow("chatty")
    def chatty(ctx, input):
        yield ctx.pi.send_message(f"hello from {ctx.instance_id}")
        return None

    rt.set_host(pdn.InMemoryAgentHost())
    # A long interval: only the transcript's own notification can bring the message in time.
    dash = pdn.dashboard(rt, refresh_interval=3600)
    try:
        assert dash.snapshot.transcript == ()
        instance = iid("chat")
        rt.wait_for_workflow(rt.start_workflow("chatty", None, instance_id=instance), timeout=30)
        wait_until(lambda: dash.snapshot.transcript, timeout=10)
        assert [(m.instance_id, m.content) for m in dash.snapshot.transcript] == [(instance, f"hello from {instance}")]
        assert f"hello from {instance}" in dash.transcript_html.value
    finally:
        dash.close()


def test_stopping_the_kernel_runtime_closes_its_dashboards(registry, db_path, no_leaked_comms) -> None:
    rt = pdn.kernel_runtime(db=db_path, registry=registry)
    try:
        dash = pdn.dashboard(refresh_interval=0.05)
        assert dash.controller.runtime is rt and dash.live
    finally:
        pdn.stop_kernel_runtime()
    assert not dash.live and rt.state is pdn.RuntimeState.STOPPED


def test_stopped_runtime_is_reported_not_raised(make_runtime, no_leaked_comms) -> None:
    rt = make_runtime().start()
    rt.shutdown()
    dash = pdn.dashboard(rt, live=False)
    try:
        assert dash.snapshot.error is not None and "stopped" in dash.snapshot.error
        assert dash.snapshot.runtime.state == "stopped"
    finally:
        dash.close()


def test_delete_asks_first_then_removes_the_instance(rt, waiting, no_leaked_comms) -> None:
    done = start_waiting(rt, "del-done")
    rt.signal_workflow(done, "decision", "yes")
    rt.wait_for_workflow(done, timeout=30)
    running = start_waiting(rt, "del-running")
    dash = pdn.dashboard(rt, live=False)
    try:
        assert dash.delete_box.layout.display == "none"
        dash.delete_button.click()
        assert dash.last_action == "Select an instance to delete first." and dash.pending_delete is None

        dash.select(done)
        dash.delete_button.click()  # asks; nothing deleted yet
        assert dash.pending_delete == (done, False) and dash.delete_box.layout.display == "flex"
        assert "Delete <b>del-done</b>, its sub-workflows" in dash.delete_prompt.value
        assert "cannot be undone" in dash.delete_prompt.value and dash.delete_confirm_button.description == "Delete"
        assert rt.get_workflow(done).status is pdn.WorkflowStatus.COMPLETED
        dash.delete_keep_button.click()
        assert dash.last_action == "Kept del-done." and dash.delete_box.layout.display == "none"
        assert rt.get_workflow(done).status is pdn.WorkflowStatus.COMPLETED

        dash.delete_button.click()
        dash.select(running)  # moving to another row withdraws the question
        assert dash.pending_delete is None and dash.delete_box.layout.display == "none"
        dash.select(done)
        dash.delete_button.click()
        # The confirmation as the front end sends it.
        dash.delete_confirm_button._handle_msg(
            {"content": {"data": {"method": "custom", "content": {"event": "click"}}}, "buffers": []}
        )
        assert dash.last_action.startswith("Deleted 1 instance (1 executions, ")
        with pytest.raises(pdn.InstanceNotFoundError):
            rt.get_workflow(done)
        assert [v for _, v in dash.instances.options] == [running] and dash.selected_history is None
        assert dash.delete_box.layout.display == "none"

        dash.select(running)  # a running instance: the question says it is cancelled first
        dash.delete_button.click()
        assert dash.pending_delete == (running, True) and "still running: it is cancelled first" in (
            dash.delete_prompt.value
        )
        assert dash.delete_confirm_button.description == "Cancel and delete"
        dash.delete_confirm_button.click()
        assert dash.last_action.startswith("Deleted 1 instance") and rt.list_workflows() == []
    finally:
        dash.close()


def test_selected_history_downloads_as_json(rt, waiting, no_leaked_comms) -> None:
    import base64
    import re

    instance = start_waiting(rt, "dl-1")
    dash = pdn.dashboard(rt, live=False)
    try:
        assert dash.download_html.value == ""
        dash.select(instance)
        link = dash.download_html.value
        found = re.search(
            r'<a download="dl-1\.history\.json" href="data:application/json;base64,([A-Za-z0-9+/=]+)"', link
        )
        assert found is not None and "download history JSON" in link
        text = base64.b64decode(found.group(1)).decode("utf-8")
        assert text == rt.history(instance).to_json()  # what the browser saves
        assert pdn.HistoryList.from_json(text) == rt.history(instance)
        assert pdn.ReplayHistory.from_json(text).workflow_name == "approve"  # and it replays
        rt.signal_workflow(instance, "decision", "yes")
        rt.wait_for_workflow(instance, timeout=30)
        dash.refresh()  # the link follows the history as it grows
        text = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", dash.download_html.value).group(1)).decode()
        assert pdn.HistoryList.from_json(text)[-1].kind == "OrchestrationCompleted"
        dash.select(None)
        assert dash.download_html.value == ""
    finally:
        dash.close()


def test_a_history_too_large_for_a_link_says_how_to_save_it(rt, waiting, monkeypatch, no_leaked_comms) -> None:
    from pi_duroxide_nb.notebook.ui import _dashboard

    monkeypatch.setattr(_dashboard, "_DOWNLOAD_LIMIT", 100)
    instance = start_waiting(rt, "dl-big")
    dash = pdn.dashboard(rt, live=False)
    try:
        dash.select(instance)
        assert "too large for a link here" in dash.download_html.value
        assert "rt.history(&#x27;dl-big&#x27;).to_json()" in dash.download_html.value
        assert "base64" not in dash.download_html.value
    finally:
        dash.close()


def test_event_form_answers_a_typed_wait_and_shows_errors_inline(rt, registry, iid, no_leaked_comms) -> None:
    from enum import Enum

    from pydantic import BaseModel, Field

    class Risk(str, Enum):
        LOW = "low"
        HIGH = "high"

    class Approval(BaseModel):
        """Sign-off for a deploy."""

        approved: bool = Field(description="Ship it?")
        risk: Risk = Risk.LOW
        replicas: int = Field(default=1, description="How many to run")
        note: str | None = None

    @registry.register_workflow("gate")
    def gate(ctx, input):
        decision = yield ctx.wait_for_event("approval", model=Approval)
        more = yield ctx.wait_for_event("notes")
        return [decision.approved, decision.risk.value, decision.replicas, decision.note, more]

    instance = rt.start_workflow("gate", instance_id=iid("gate"))
    wait_until(lambda: rt.waiting_for(instance), timeout=10)
    dash = pdn.dashboard(rt, live=False)
    try:
        form = dash.event_form
        assert form.layout.display == "none"  # nothing selected
        dash.select(instance)
        assert form.layout.display == "flex"
        assert "approval" in form.title_html.value and "Approval" in form.title_html.value
        assert "Sign-off for a deploy." in form.title_html.value
        assert form.event_choice.layout.display == "none"  # one event: nothing to choose
        assert set(form.fields) == {"approved", "risk", "replicas", "note"}
        approved, risk, replicas = form.fields["approved"], form.fields["risk"], form.fields["replicas"]
        assert approved.options == (("true", True), ("false", False)) and approved.value is None
        assert risk.options == (("low", "low"), ("high", "high")) and risk.value == "low"
        assert replicas.value == "1" and replicas.tooltip == "How many to run"
        labels = [row.children[0].value for row in form.fields_box.children]
        assert "Ship it?" in labels[0] and "Approved *" in labels[0]

        # Missing and malformed values: refused, shown beside the fields, nothing sent.
        replicas.value = "lots"
        form.send_button.click()
        assert "does not match Approval" in form.error_html.value
        assert "Field required" in form.field_errors["approved"].value
        assert "valid integer" in form.field_errors["replicas"].value
        assert form.field_errors["risk"].value == ""
        assert "does not match Approval" in dash.last_action
        assert [w.name for w in rt.waiting_for(instance)] == ["approval"]
        assert not [e for e in rt.history(instance) if e.kind == "ExternalEvent"]

        # A refresh keeps what was typed.
        approved.value = True
        dash.refresh()
        assert form.fields["approved"] is approved and approved.value is True

        risk.value = "high"
        replicas.value = "3"
        form.fields["note"].value = "after the freeze"
        form.send_button.click()
        assert dash.last_action == f"Sent 'approval' to {instance}." and form.error_html.value == ""
        assert all(e.value == "" for e in form.field_errors.values())

        # The next wait has no model: the event name is given, the data is a JSON box.
        wait_until(lambda: (dash.refresh(), form.wait is not None and form.wait.name == "notes")[1], timeout=10)
        assert form.fields == {} and form.fields_box.children == (form.payload,)
        assert "any JSON" in form.title_html.value
        form.payload.value = "{oops"
        form.send_button.click()
        assert "not valid JSON" in form.error_html.value
        form.payload.value = '["ok"]'
        form.send_button.click()
        state = rt.wait_for_workflow(instance, timeout=10)
        assert state.output == [True, "high", 3, "after the freeze", ["ok"]]
        dash.refresh()
        assert form.layout.display == "none"  # finished: it waits for nothing
    finally:
        dash.close()


def test_cancelled_instance_closes_its_timeline_and_reads_terminated(rt, waiting, no_leaked_comms) -> None:
    instance = start_waiting(rt, "tl-1")
    dash = pdn.dashboard(rt, live=False)
    try:
        dash.select(instance)
        assert "1 running now" in dash.header.value
        open_bars = [b for b in dash.selected_history.bars if b.end is None]
        assert [b.label for b in open_bars] == ["decision"]
        dash.cancel_button.click()
        dash.cancel_confirm_button.click()
        rt.wait_for_workflow(instance, timeout=10)
        dash.refresh()
        assert dash.selected_history.state.status is pdn.WorkflowStatus.TERMINATED
        assert all(b.end is not None for b in dash.selected_history.bars)
        [wait_bar] = [b for b in dash.selected_history.bars if b.kind == "event"]
        assert wait_bar.outcome == "cancelled"
        assert "0 running now" in dash.header.value and "Terminated 1" in dash.header.value
        dash.status_filter.value = "Terminated"
        assert [v for _, v in dash.instances.options] == [instance]
        dash.cancel_button.click()
        assert "already finished (Terminated)" in dash.last_action and dash.cancel_box.layout.display == "none"
    finally:
        dash.close()


def test_selecting_an_instance_started_after_the_last_refresh_sticks(rt, waiting, iid, no_leaked_comms) -> None:
    first = start_waiting(rt, iid("first"))
    dash = pdn.dashboard(rt, live=False)
    try:
        dash.select(first)
        later = start_waiting(rt, iid("later"))  # not in the list the dashboard last read
        dash.select(later)
        assert dash.instances.value == later
        dash.refresh()  # the refresh re-reads the selected row: it must be the one asked for
        assert dash.selected_history.state.instance_id == later
    finally:
        dash.close()


def test_workers_section_shows_the_live_workers(registry, db_path, no_leaked_comms) -> None:
    from datetime import datetime, timezone

    from pi_duroxide_nb.engine._workers import WorkerBeacon, WorkerTable

    client = pdn.WorkflowRuntime(db=db_path, registry=registry, worker=False).start()
    # What a worker process does (tests/test_worker_cli.py runs real ones): announce itself beside the store.
    table = WorkerTable(client._codes.path)
    now = datetime.now(timezone.utc)
    info = pdn.WorkerInfo(
        worker_id="box-4242-abcdef",
        host="box",
        pid=4242,
        started_at=now,
        last_seen=now,
        concurrency=3,
        workflows=("approve@c1234567",),
    )
    beacon = WorkerBeacon(table, info, interval=0.1).start()
    dash = pdn.dashboard(client, refresh_interval=0.1)
    try:
        assert "(client)" in dash.header.value
        wait_until(lambda: dash.snapshot.workers, timeout=10)
        assert [w.worker_id for w in dash.snapshot.workers] == ["box-4242-abcdef"]
        text = dash.workers_html.value
        assert "1 live worker;" in text and "box pid 4242" in text and "concurrency 3" in text
        assert "approve@c1234567" in text and "client only" in text
        beacon.stop()  # a graceful stop leaves the view at the next refresh
        wait_until(lambda: not dash.snapshot.workers, timeout=10)
        assert "No worker processes" in dash.workers_html.value
    finally:
        dash.close()
        beacon.stop()
        table.close()
        client.shutdown()
