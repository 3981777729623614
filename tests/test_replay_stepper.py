"""The replay stepper on checked-in histories (tests/replay_fixtures), and replay_check as a fixture helper."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import duroxide.context
import pytest

import pi_duroxide_nb as pdn
from pi_duroxide_nb.replay._context import ReplayOrchestrationContext
from tests import replay_workflows as wf

FIXTURES = Path(__file__).with_name("replay_fixtures")
APPROVED = FIXTURES / "deploy_approved.json"
WAITING = FIXTURES / "deploy_waiting.json"
NESTED = FIXTURES / "nested.json"


# --- replay_check: histories as regression fixtures ----------------------------------------------


def test_replay_check_passes_for_the_recorded_code() -> None:
    outcome = pdn.replay_check(APPROVED, wf.deploy)
    assert outcome.status == "completed"
    assert outcome.output == {"status": "deployed", "page": 200}
    assert pdn.replay_check(NESTED, wf.nested).output == 3
    assert pdn.replay_check(WAITING, wf.deploy).status == "running"


def test_replay_check_raises_on_an_edited_schedule() -> None:
    def deploy_v2(ctx, input):
        service = input["service"]
        build = yield ctx.pi.tool("bash", {"command": f"make build {service} --fast"})  # edited
        return build

    with pytest.raises(pdn.ReplayDivergenceError, match="schedule mismatch") as info:
        pdn.replay_check(APPROVED, deploy_v2)
    divergence = info.value.divergence
    assert divergence is not None and divergence.step == 1
    assert divergence.expected is not None and divergence.expected.name == "__pi_tool"
    assert "--fast" in (divergence.actual or "")
    assert "register the change as a new version" in str(info.value) and "continue_as_new" in str(info.value)


def test_replay_check_raises_when_code_stops_scheduling() -> None:
    def deploy_v3(ctx, input):
        yield ctx.pi.tool("bash", {"command": f"make build {input['service']}"})
        ctx.set_custom_status("awaiting-approval")
        ctx.kv.set("build", {"exit": 0})
        return (yield ctx.wait_for_event("deploy-decision"))

    with pytest.raises(pdn.ReplayDivergenceError) as info:
        pdn.replay_check(APPROVED, deploy_v3)
    assert info.value.divergence is not None
    assert info.value.divergence.reason == "schedule mismatch"
    assert info.value.divergence.expected.kind == "ActivityScheduled"
    assert info.value.divergence.actual == "CustomStatusUpdated status='awaiting-approval'"


def test_silent_differences_are_warnings_and_fail_only_strict_checks() -> None:
    def deploy_slow(ctx, input):
        service = input["service"]
        build = yield ctx.pi.tool("bash", {"command": f"make build {service}"})
        page = yield ctx.schedule_activity("fetch", f"https://{service}.example")
        ctx.set_custom_status("waiting for a human")  # value changed: accepted by the engine
        ctx.kv.set("build", {"exit": build["exitCode"]})
        decision = yield ctx.wait_for_event("deploy-decision")
        yield ctx.schedule_timer(timedelta(hours=1))  # delay changed: accepted by the engine
        return {"status": decision["action"], "page": page["status"]}  # output changed

    outcome = pdn.replay_check(APPROVED, deploy_slow)
    assert outcome.output == {"status": "approve", "page": 200}
    with pytest.raises(pdn.ReplayDivergenceError, match="accepts") as info:
        pdn.replay_check(APPROVED, deploy_slow, strict=True)
    assert info.value.divergence is None
    kinds = [w.kind for w in info.value.warnings]
    assert kinds == ["custom_status_changed", "timer_delay_changed", "outcome_changed"]


def test_code_that_returns_early_is_a_warning() -> None:
    def deploy_short(ctx, input):
        yield ctx.pi.tool("bash", {"command": f"make build {input['service']}"})
        return "short"

    stepper = pdn.ReplayStepper.from_history(APPROVED, deploy_short)
    assert stepper.divergence is None
    assert [w.kind for w in stepper.warnings] == ["returned_early", "outcome_changed"]
    assert stepper.outcome.output == "short"


# --- stepping -----------------------------------------------------------------------------------


def test_steps_show_task_events_value_line_and_locals() -> None:
    stepper = pdn.ReplayStepper.from_history(APPROVED, wf.deploy)
    first = stepper.step()
    assert first.index == 1 and first.kind == "yield" and first.status == "replayed" and first.from_history
    assert first.task is not None and first.task.kind == "activity" and first.task.name == "__pi_tool"
    assert first.task.input == {"name": "bash", "args": {"command": "make build api"}}
    assert first.event_kinds == ("OrchestrationStarted", "ActivityScheduled", "ActivityCompleted")
    assert first.events[2].source_event_id == first.events[1].event_id
    assert first.value == {"exitCode": 0, "stdout": "make build api"}
    source_lines = Path(wf.__file__).read_text().splitlines()
    assert "build = yield ctx.pi.tool" in source_lines[first.line - 1]
    assert first.function == "deploy"
    assert first.locals["service"] == "'api'"
    assert first.locals["ctx"] == "<ctx 'deploy' instance='deploy-approved'>"

    stepper.step()
    wait = stepper.step()
    assert wait.task is not None and wait.task.kind == "event" and wait.task.name == "deploy-decision"
    assert wait.custom_status == "awaiting-approval"
    assert wait.kv == {"build": {"exit": 0}}
    assert wait.value == {"action": "approve"}
    assert wait.event_kinds[:2] == ("CustomStatusUpdated", "KeyValueSet")

    end = stepper.run_to_end()
    assert end.kind == "end" and stepper.done and end.task is None
    assert end.outcome is not None and end.outcome.output == {"status": "deployed", "page": 200}
    assert end.event_kinds == ("OrchestrationCompleted",)
    assert stepper.total == end.index == 5
    assert stepper.step() == end  # stepping past the end stays at the end


def test_snapshots_are_immutable() -> None:
    def deploy_mutating(ctx, input):
        build = yield ctx.pi.tool("bash", {"command": f"make build {input['service']}"})
        build["stdout"] = "changed by the code"  # the generator owns what it was sent
        return (yield ctx.schedule_activity("fetch", f"https://{input['service']}.example"))

    stepper = pdn.ReplayStepper.from_history(APPROVED, deploy_mutating)
    snap = stepper.step()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.index = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.locals["service"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.kv["x"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.events[0].fields["version"] = "edited"  # type: ignore[index]
    with pytest.raises(TypeError):
        stepper.history.kv_seed["x"] = "1"  # type: ignore[index]
    before = (snap.value, dict(snap.locals), snap.kv)
    later = stepper.step()
    assert later.kind == "yield" and "changed by the code" in later.locals["build"]
    assert snap.value == {"exitCode": 0, "stdout": "make build api"}  # later steps leave it as it was
    assert (snap.value, dict(snap.locals), snap.kv) == before


def test_back_goto_and_step_to_rebuild_identical_snapshots() -> None:
    cached = pdn.ReplayStepper.from_history(APPROVED, wf.deploy)
    rebuilt = pdn.ReplayStepper.from_history(APPROVED, wf.deploy, cache_size=0)
    forward = [cached.step() for _ in range(5)]
    for stepper in (cached, rebuilt):
        stepper.run_to_end()
        assert stepper.back() == forward[3]
        assert stepper.back() == forward[2]
        assert stepper.goto(1) == forward[0]
        assert stepper.goto(99) == forward[4]
        assert stepper.first() == forward[0]
        assert stepper.step_to("TimerFired") == forward[3]
        assert stepper.step_to("event") == forward[4]  # no further event: stops at the end
    with pytest.raises(pdn.PayloadError, match="first step"):
        rebuilt.first() and rebuilt.back()
    with pytest.raises(pdn.PayloadError, match="numbered from 1"):
        rebuilt.goto(0)
    with pytest.raises(pdn.PayloadError, match="'TimerFird'.*TimerFired.*spelling"):
        rebuilt.step_to("TimerFird")
    assert rebuilt.index == 1  # a bad kind leaves the cursor where it was


def test_helpers_with_yield_from_show_the_helper_line_and_traces() -> None:
    stepper = pdn.ReplayStepper.from_history(NESTED, wf.nested)
    snap = stepper.step()
    assert snap.function == "_checks"
    assert snap.locals["i"] == "0" and snap.locals["n"] == "3"
    assert snap.traces == ("info: starting checks",)
    assert [s.task.input for s in stepper.steps()[:3]] == ["check-0", "check-1", "check-2"]


def test_running_instance_stops_at_the_last_recorded_event() -> None:
    stepper = pdn.ReplayStepper.from_history(WAITING, wf.deploy)
    last = stepper.run_to_end()
    assert last.kind == "yield" and last.status == "waiting" and last.value is None
    assert last.task is not None and last.task.kind == "event"
    assert stepper.outcome.status == "running" and stepper.divergence is None


def test_a_history_cut_short_shows_what_would_run_live() -> None:
    history = pdn.ReplayHistory.load(APPROVED)
    cut = pdn.ReplayHistory(instance_id=history.instance_id, execution_id=1, events=history.events[:3])
    stepper = pdn.ReplayStepper.from_history(cut, wf.deploy)
    assert stepper.step().status == "replayed"
    live = stepper.step()
    assert live.status == "new" and not live.from_history
    assert live.pending == ('ActivityScheduled fetch("https://api.example")',)


# --- loading histories --------------------------------------------------------------------------


def test_json_export_round_trips_exactly(tmp_path: Path) -> None:
    history = pdn.ReplayHistory.load(APPROVED)
    again = pdn.ReplayHistory.load(history.save(tmp_path / "copy.json"))
    assert again == history
    assert again.workflow_name == "deploy" and again.version.startswith("0.0.0-c")
    assert pdn.ReplayHistory.from_json(json.dumps([e.to_row() for e in history.events])).events == history.events
    seeded = dataclasses.replace(history, kv_seed={"rounds": "2"})
    assert pdn.ReplayHistory.load(seeded.save(tmp_path / "seeded.json")) == seeded


def test_from_runtime_history_events_equals_raw_rows(registry, make_runtime, iid) -> None:
    wf.register(registry)
    host = pdn.InMemoryAgentHost(tools={"bash": lambda args: {"exitCode": 0, "stdout": args["command"]}})
    rt = make_runtime(host=host).start()
    instance = rt.start_workflow("nested", 2, instance_id=iid("nested"))
    rt.wait_for_workflow(instance, timeout=30)
    from_rows = pdn.ReplayStepper(rt, instance)
    from_events = pdn.ReplayStepper.from_history(rt.history(instance), wf.nested)
    assert [e.input_text for e in from_rows.history.events] == [e.input_text for e in from_events.history.events]
    assert from_rows.steps() == from_events.steps()
    assert from_rows.outcome == from_events.outcome and from_rows.outcome.output == 2
    # replay_check on a store: the runtime, or the SQLite file itself while the runtime uses it
    assert pdn.replay_check((rt, instance), wf.nested).output == 2
    assert pdn.replay_check((rt.db, instance), wf.nested).output == 2
    assert pdn.ReplayHistory.from_store(rt.db, instance) == from_rows.history

    def nested_edited(ctx, n):
        return (yield ctx.schedule_activity("fetch", "check-9"))

    with pytest.raises(pdn.ReplayDivergenceError, match="schedule mismatch"):
        pdn.replay_check((Path(rt.db), instance), nested_edited)
    with pytest.raises(pdn.PayloadError, match=r"workflow store.*\(.*instance_id\)"):
        pdn.replay_check(rt.db, wf.nested)
    with pytest.raises(pdn.InstanceNotFoundError):
        pdn.replay_check((rt.db, iid("nobody")), wf.nested)
    missing = Path(rt.db).with_name("missing.db")
    with pytest.raises(pdn.PayloadError, match="No workflow store"):
        pdn.replay_check((missing, instance), wf.nested)
    assert not missing.exists()  # reading never creates a store
    # the store is unharmed: the running engine goes on with new work
    again = rt.start_workflow("nested", 1, instance_id=iid("nested"))
    assert rt.wait_for_workflow(again, timeout=30).output == 1


def test_bad_histories_and_code_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(pdn.PayloadError, match="empty history"):
        pdn.ReplayStepper.from_history([], wf.deploy)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(pdn.PayloadError, match="not JSON"):
        pdn.replay_check(broken, wf.deploy)
    rows = [e.to_row() for e in pdn.ReplayHistory.load(APPROVED).events]
    with pytest.raises(pdn.PayloadError, match="starts with ActivityScheduled"):
        pdn.ReplayStepper.from_history(rows[1:], wf.deploy)
    with pytest.raises(pdn.PayloadError, match="generator function"):
        pdn.ReplayStepper.from_history(APPROVED, lambda ctx, x: x)
    with pytest.raises(pdn.PayloadError, match="Cannot read the history file"):
        pdn.replay_check(tmp_path / "missing.json", wf.deploy)
    with pytest.raises(pdn.PayloadError, match="Cannot read a history"):
        pdn.replay_check(42, wf.deploy)
    with pytest.raises(pdn.WorkflowNotFoundError, match="workflow=fn"):
        pdn.ReplayStepper(history=APPROVED, registry=pdn.WorkflowRegistry())


def test_the_started_version_comes_from_the_registry(registry) -> None:
    wf.register(registry)

    def deploy(ctx, input):  # a later edit, registered as the newest version
        return (yield ctx.schedule_timer(1))

    registry.register_workflow("deploy", deploy)
    stepper = pdn.ReplayStepper(history=APPROVED, registry=registry)
    assert stepper.definition.fn is wf.deploy  # the version the instance started with, not the newest
    assert stepper.divergence is None


def test_unknown_instance(rt, iid) -> None:
    with pytest.raises(pdn.InstanceNotFoundError):
        pdn.ReplayStepper(rt, iid("nobody"))


# --- fidelity of the pieces -----------------------------------------------------------------------


def test_descriptors_equal_the_engine_sdk() -> None:
    sdk = duroxide.context.OrchestrationContext(
        {"instanceId": "i", "executionId": 1, "orchestrationName": "n", "orchestrationVersion": "v"}
    )
    ours = ReplayOrchestrationContext(
        instance_id="i", execution_id=1, name="n", version="v", custom_status=None, emit=lambda _a: None
    )
    retry = {"max_attempts": 4, "timeout_ms": 10, "total_timeout_ms": None, "backoff": "linear"}
    calls = [
        ("schedule_activity", ("a", {"k": [1, "é", 2.5]})),
        ("schedule_activity_with_retry", ("a", None, retry)),
        ("schedule_timer", (25,)),
        ("wait_for_event", ("go",)),
        ("dequeue_event", ("q",)),
        ("schedule_sub_orchestration_versioned", ("c", "1.0", [1])),
        ("schedule_sub_orchestration_versioned_with_id", ("c", "1.0", "child-1", {"x": None})),
        ("new_guid", ()),
        ("utc_now", ()),
        ("continue_as_new_versioned", ({"n": 1}, "2.0")),
    ]
    for method, args in calls:
        assert getattr(ours, method)(*args) == dict(getattr(sdk, method)(*args)), method
    tasks = [ours.schedule_timer(1), ours.wait_for_event("e")]
    assert ours.all(tasks) == sdk.all(tasks)
    assert ours.race(*tasks) == sdk.race(*tasks)


def test_locals_are_safe_and_truncated() -> None:
    class Loud:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    def noisy(ctx, input):
        big = "x" * 5000
        loud = Loud()
        yield ctx.pi.tool("bash", {"command": f"make build {input['service']}"})
        return len(big), loud

    snap = pdn.ReplayStepper.from_history(APPROVED, noisy).step()
    assert len(snap.locals["big"]) <= 160 and "..." in snap.locals["big"]
    assert snap.locals["loud"] == "<Loud instance>"  # its __repr__ raised; stepping goes on
