"""The replay widget, headless: build it, click it, assert on its state; no leaked comms."""

from __future__ import annotations

from pathlib import Path

import pytest

import pi_duroxide_nb as pdn
from pi_duroxide_nb.notebook.ui._replay import ReplayWidget, replay_widget
from tests import replay_workflows as wf

FIXTURES = Path(__file__).with_name("replay_fixtures")


def test_buttons_and_slider_move_the_stepper(no_leaked_comms) -> None:
    widget = ReplayWidget(pdn.ReplayStepper.from_history(FIXTURES / "deploy_approved.json", wf.deploy))
    try:
        assert widget.step is None and widget.slider.max == 5 and widget.back_button.disabled
        widget.step_button.click()
        assert widget.slider.value == 1 and widget.step.index == 1
        assert "pdn-current" in widget.source.value
        current = next(line for line in widget.source.value.split("</div>") if "pdn-current" in line)
        assert f"{widget.step.line:>4}" in current and "make build" in current
        assert "from history" in widget.details.value and "__pi_tool" in widget.details.value
        details = widget.details.value
        assert "sent back: <code>{&#x27;exitCode&#x27;: 0, &#x27;stdout&#x27;: &#x27;make build api&#x27;}" in details
        assert "<td>service</td><td>&#x27;api&#x27;</td>" in details  # locals
        for kind in ("ActivityScheduled", "ActivityCompleted"):  # events; kinds and times never wrap
            assert f"<td class=pdn-nw>{kind}</td>" in details
        widget.step_button.click()
        widget.step_button.click()
        assert "<td>custom status</td><td>awaiting-approval</td>" in widget.details.value
        widget.end_button.click()
        assert widget.stepper.done and widget.slider.value == 5 and widget.step_button.disabled
        assert "code ended" in widget.details.value
        widget.back_button.click()
        assert widget.slider.value == 4
        widget.slider.value = 2
        assert widget.step.index == 2
        widget.first_button.click()
        assert widget.step.index == 1 and widget.back_button.disabled
        assert widget.verdict.value == ""  # the recorded code replays cleanly
    finally:
        widget.close()


def test_divergence_shows_a_red_panel_with_expected_and_actual(no_leaked_comms) -> None:
    def deploy_v2(ctx, input):
        return (yield ctx.pi.tool("bash", {"command": "make build --fast"}))

    widget = ReplayWidget(pdn.ReplayStepper.from_history(FIXTURES / "deploy_approved.json", deploy_v2))
    try:
        assert "pdn-divergence" in widget.verdict.value and "schedule mismatch" in widget.verdict.value
        widget.end_button.click()
        assert widget.step.kind == "divergence"
        assert "history (expected)" in widget.details.value and "--fast" in widget.details.value
    finally:
        widget.close()


def test_a_history_that_ends_early_shows_what_would_run_next(no_leaked_comms) -> None:
    history = pdn.ReplayHistory.load(FIXTURES / "deploy_approved.json")
    cut = pdn.ReplayHistory(instance_id=history.instance_id, execution_id=1, events=history.events[:3])
    widget = ReplayWidget(pdn.ReplayStepper.from_history(cut, wf.deploy))
    try:
        widget.end_button.click()
        assert widget.step.index == widget.slider.max == 2 and widget.step_button.disabled
        assert "beyond history: would run live" in widget.details.value
        assert "would run next (live): <code>ActivityScheduled fetch(&quot;https://api.example&quot;)</code>" in (
            widget.details.value
        )
    finally:
        widget.close()


def test_replay_widget_on_a_running_instance(registry, make_runtime, iid, no_leaked_comms) -> None:
    wf.register(registry)
    host = pdn.InMemoryAgentHost(tools={"bash": lambda args: {"exitCode": 0, "stdout": args["command"]}})
    rt = make_runtime(host=host).start()
    instance = rt.start_workflow("deploy", {"service": "api"}, instance_id=iid("deploy"))
    from tests.conftest import wait_until

    wait_until(lambda: rt.get_workflow(instance).custom_status == "awaiting-approval")
    widget = replay_widget(rt, instance)
    try:
        widget.end_button.click()
        assert widget.step.status == "waiting" and widget.step.task.kind == "event"
        assert "scheduled, no result yet" in widget.details.value
        assert repr(widget).startswith("<ReplayWidget <ReplayStepper 'deploy'")
    finally:
        widget.close()


def test_a_cell_body_workflow_shows_its_whole_source(registry, make_runtime, iid, no_leaked_comms) -> None:
    # A %%workflow body has no def line: Python's inspect finds only its first statement.
    registry.register_activity("double", lambda ctx, x: x * 2)
    body = 'first = yield ctx.schedule_activity("double", input)\nctx.set_custom_status("half way")\n'
    body += 'second = yield ctx.schedule_activity("double", first)\nreturn second\n'
    pdn.define_workflow("celled", body, registry=registry)
    rt = make_runtime().start()
    instance = rt.start_workflow("celled", 1, instance_id=iid("celled"))
    assert rt.wait_for_workflow(instance, timeout=30).output == 4
    widget = replay_widget(rt, instance)
    try:
        widget.step_button.click()
        widget.step_button.click()
        assert widget.step.line == 3
        assert widget.source.value.count('class="pdn-line') == 4 and "return second" in widget.source.value
        current = next(line for line in widget.source.value.split("</div>") if "pdn-current" in line)
        assert "   3  second = yield" in current
    finally:
        widget.close()


def test_the_workflow_replay_magic_opens_this_widget(registry, db_path, iid, no_leaked_comms) -> None:
    from IPython.core.error import UsageError
    from IPython.core.getipython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    wf.register(registry)
    ip = start_ipython() or get_ipython()
    rt = pdn.kernel_runtime(db=db_path, registry=registry)
    ip.run_line_magic("load_ext", "pi_duroxide_nb")
    widget = None
    try:
        instance = rt.start_workflow("nested", 2, instance_id=iid("nested"))
        rt.wait_for_workflow(instance, timeout=30)
        result = ip.run_cell(f"%workflow replay {instance}")  # what the dashboard's Replay button calls too
        assert result.error_in_exec is None, result.error_in_exec
        widget = result.result
        assert isinstance(widget, ReplayWidget) and widget.stepper.history.instance_id == instance
        assert widget.stepper.total == 3
        with pytest.raises(UsageError):
            ip.run_line_magic("workflow", f"replay {iid('nobody')}")
    finally:
        if widget is not None:
            widget.close()
        ip.run_line_magic("unload_ext", "pi_duroxide_nb")
        pdn.stop_kernel_runtime()


def test_the_stepper_follows_a_running_instance(registry, make_runtime, iid, no_leaked_comms) -> None:
    from tests.conftest import wait_until

    @registry.register_workflow("steps")
    def steps(ctx, input):
        first = yield ctx.wait_for_event("one")
        second = yield ctx.wait_for_event("two")
        return [first, second]

    rt = make_runtime().start()
    instance = rt.start_workflow("steps", instance_id=iid())
    wait_until(lambda: rt.waiting_for(instance), timeout=10)
    widget = replay_widget(rt, instance, follow=0.05)
    try:
        assert widget.following and "running: follows new events" in widget.title.value
        before = widget.stepper.total
        widget.step_button.click()
        assert widget.step.index == 1
        rt.signal_workflow(instance, "one", 1)
        wait_until(lambda: widget.stepper.total > before and widget.slider.max == widget.stepper.total, timeout=10)
        assert widget.step.index == 1 and widget.slider.value == 1  # the current step stays
        rt.signal_workflow(instance, "two", 2)
        rt.wait_for_workflow(instance, timeout=10)
        wait_until(lambda: widget.stepper.finished and not widget.following, timeout=10)
        assert "running" not in widget.title.value
        widget.end_button.click()
        assert "returned [1, 2]" in widget.details.value
    finally:
        widget.close()
    assert not widget.following


def test_the_dashboards_stepper_follows_on_its_refresh(registry, make_runtime, iid, no_leaked_comms) -> None:
    from tests.conftest import wait_until

    @registry.register_workflow("steps")
    def steps(ctx, input):
        first = yield ctx.wait_for_event("one")
        return first

    rt = make_runtime().start()
    instance = rt.start_workflow("steps", instance_id=iid())
    wait_until(lambda: rt.waiting_for(instance), timeout=10)
    dash = pdn.dashboard(rt, live=False)
    try:
        dash.select(instance)
        dash.replay_button.click()
        widget = dash.replay_widget
        assert not widget.following  # the dashboard drives it
        widget.end_button.click()
        shown = widget.stepper.index
        assert widget.step.status == "waiting"
        rt.signal_workflow(instance, "one", "yes")
        rt.wait_for_workflow(instance, timeout=10)
        dash.refresh()
        assert widget.stepper.finished and widget.stepper.index == shown
        widget.end_button.click()
        assert "returned &quot;yes&quot;" in widget.details.value
    finally:
        dash.close()
