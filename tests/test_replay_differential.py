"""Differential tests: the stepper's verdict on a history must equal the engine's.

Many workflows covering every primitive run on the real runtime; each execution's
history is then replayed by the stepper with the same code, and its outcome (output text,
failure, continue-as-new input) must equal what the engine recorded. For nondeterminism,
an in-flight instance's code is swapped in duroxide's function table (what re-registering
a name does to in-flight instances in the engine: see DUROXIDE_NOTES "Registration"), so
the ENGINE replays the edited code against the recorded history and records its verdict;
the stepper, given the same edited code and the same history, must give the same reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import duroxide
import pytest

import pi_duroxide_nb as pdn
from pi_duroxide_nb.engine._engine import _orchestration
from tests.conftest import wait_until

FIXED = pdn.PollingConfig.fixed(timedelta(milliseconds=5))


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _register_primitives(reg: pdn.WorkflowRegistry) -> dict[str, tuple[str, Any]]:
    """Register workflows covering every primitive; returns {label: (workflow, input)}."""

    @reg.register_activity("double")
    def double(ctx, x):
        return x * 2

    @reg.register_activity("boom")
    def boom(ctx, x):
        raise ValueError(f"bad input {x}")

    flaky_calls: dict[str, int] = {}

    @reg.register_activity("flaky")
    def flaky(ctx, key):
        flaky_calls[key] = flaky_calls.get(key, 0) + 1
        if flaky_calls[key] < 2:
            raise RuntimeError(f"flaky {key} attempt {flaky_calls[key]}")
        return {"key": key, "attempts": flaky_calls[key]}

    @reg.register_activity("sleepy")
    def sleepy(ctx, seconds):
        time.sleep(seconds)
        return seconds

    @reg.register_workflow("odds")
    def odds(ctx, _):
        empty = yield ctx.all([])
        try:
            yield 42  # not a task: the engine layer throws it back without the engine
        except pdn.PayloadError:
            bad = "refused"
        try:
            yield ctx.schedule_activity_with_retry("sleepy", 0.4, attempts=3, timeout=timedelta(milliseconds=50))
        except pdn.TaskFailedError as err:
            timed_out = str(err)
        fast = yield ctx.race(ctx.schedule_activity("double", 4), ctx.schedule_activity("sleepy", 0.3))
        named = yield ctx.schedule_sub_orchestration("child", 1, instance_id=f"{ctx.instance_id}-kid")
        return {"empty": empty, "bad": bad, "timed_out": timed_out, "fast": [fast.index, fast.value], "named": named}

    @reg.register_workflow("seq")
    def seq(ctx, n):
        total = 0
        for i in range(n):
            total += yield ctx.schedule_activity("double", i)
        return {"total": total, "json": {"k": [1, 2.5, "é"]}}

    @reg.register_workflow("caught")
    def caught(ctx, _):
        try:
            yield ctx.schedule_activity("boom", 42)
        except pdn.ActivityError as err:
            return {"caught": str(err), "type": err.error_type, "activity": err.activity}
        return "unreachable"

    @reg.register_workflow("uncaught")
    def uncaught(ctx, _):
        yield ctx.schedule_activity("double", 1)
        yield ctx.schedule_activity("boom", 7)
        return "unreachable"

    @reg.register_workflow("raises")
    def raises(ctx, _):
        value = yield ctx.schedule_activity("double", 2)
        raise KeyError(f"no key {value}")

    @reg.register_workflow("retry_ok")
    def retry_ok(ctx, key):
        return (yield ctx.schedule_activity_with_retry("flaky", key, attempts=3, backoff="fixed"))

    @reg.register_workflow("retry_exhausted")
    def retry_exhausted(ctx, _):
        try:
            yield ctx.schedule_activity_with_retry("boom", 3, attempts=2)
        except pdn.TaskFailedError as err:
            return {"gave_up": str(err)}
        return None

    @reg.register_workflow("retry_timeout")
    def retry_timeout(ctx, _):
        try:
            yield ctx.schedule_activity_with_retry("double", 5, attempts=2, timeout=timedelta(seconds=30))
        except pdn.TaskFailedError as err:
            return {"err": str(err)}
        return "ok"

    @reg.register_workflow("timers")
    def timers(ctx, _):
        yield ctx.schedule_timer(20)
        yield ctx.schedule_timer(timedelta(milliseconds=10))
        now = yield ctx.utc_now()
        guid = yield ctx.new_guid()
        return {"now": now.isoformat(), "guid_len": len(guid)}

    @reg.register_workflow("status_kv")
    def status_kv(ctx, _):
        ctx.set_custom_status("starting")
        ctx.set_custom_status({"phase": 1})
        ctx.kv.set("progress", {"done": 0})
        a = yield ctx.schedule_activity("double", 21)
        ctx.kv.set("progress", {"done": a})
        ctx.kv.set("other", "x")
        ctx.kv.delete("other")
        ctx.set_custom_status("done")
        return {"status": ctx.get_custom_status(), "kv": ctx.kv.items()}

    @reg.register_workflow("events")
    def events(ctx, _):
        ctx.set_custom_status("early")
        yield ctx.schedule_timer(300)  # a signal sent now arrives before any wait: the engine drops it
        ctx.set_custom_status("waiting")
        first = yield ctx.wait_for_event("go")
        ctx.set_custom_status("waiting again")
        second = yield ctx.wait_for_event("go")
        return {"first": first, "second": second}

    @reg.register_workflow("race_event")
    def race_event(ctx, _):
        ctx.set_custom_status("racing")
        won = yield ctx.race(ctx.wait_for_event("approve"), ctx.schedule_timer(timedelta(seconds=60)))
        lost = yield ctx.race(ctx.wait_for_event("never"), ctx.schedule_timer(15))
        return {"won": won.index, "value": won.value, "lost": lost.index}

    @reg.register_workflow("race_fail")
    def race_fail(ctx, _):
        try:
            yield ctx.race(ctx.schedule_activity("boom", 1), ctx.schedule_timer(timedelta(seconds=60)))
        except pdn.TaskFailedError as err:
            return {"race_err": str(err)}
        return None

    @reg.register_workflow("fan")
    def fan(ctx, n):
        values = yield ctx.all([ctx.schedule_activity("double", i) for i in range(n)])
        outcomes = yield ctx.all(
            [ctx.schedule_activity("double", 1), ctx.schedule_activity("boom", 2), ctx.schedule_timer(5)],
            return_outcomes=True,
        )
        try:
            yield ctx.all([ctx.schedule_activity("boom", 3), ctx.schedule_activity("double", 3)])
        except pdn.ActivityError as err:
            failed = str(err)
        return {"values": values, "oks": [o.ok for o in outcomes], "failed": failed}

    @reg.register_workflow("child")
    def child(ctx, x):
        yield ctx.schedule_timer(5)
        if x < 0:
            raise ValueError("negative child input")
        return x + 1

    @reg.register_workflow("parent")
    def parent(ctx, x):
        a = yield ctx.schedule_sub_orchestration("child", x)
        try:
            yield ctx.schedule_sub_orchestration("child", -1)
        except pdn.TaskFailedError as err:
            failure = _last_line(str(err))
        return {"a": a, "failure": failure}

    @reg.register_workflow("looper")
    def looper(ctx, state):
        n = (state or {}).get("n", 0)
        seen = ctx.kv.get("rounds", 0)  # KV outlives continue-as-new
        ctx.kv.set("rounds", seen + 1)
        yield ctx.schedule_activity("double", n)
        ctx.set_custom_status(f"round {n}")
        if n < 2:
            return (yield ctx.continue_as_new({"n": n + 1}))
        return {"rounds": n + 1, "seen": seen, "status": ctx.get_custom_status()}

    @reg.register_workflow("pi_calls")
    def pi_calls(ctx, _):
        reply = yield ctx.pi.llm([{"role": "user", "content": "hi", "timestamp": 123}])
        tool = yield ctx.pi.tool("bash", {"command": "echo hi"})
        yield ctx.pi.send_message("done")
        return {"reply": reply, "tool": tool}

    return {
        "seq": ("seq", 6),
        "caught": ("caught", None),
        "uncaught": ("uncaught", None),
        "raises": ("raises", None),
        "retry_ok": ("retry_ok", "k1"),
        "retry_exhausted": ("retry_exhausted", None),
        "retry_timeout": ("retry_timeout", None),
        "timers": ("timers", None),
        "status_kv": ("status_kv", None),
        "events": ("events", None),
        "race_event": ("race_event", None),
        "race_fail": ("race_fail", None),
        "fan": ("fan", 4),
        "parent": ("parent", 10),
        "looper": ("looper", None),
        "pi_calls": ("pi_calls", None),
        "odds": ("odds", None),
    }


@pytest.fixture
def finished(registry, make_runtime, iid) -> Iterator[tuple[pdn.WorkflowRuntime, dict[str, str]]]:
    cases = _register_primitives(registry)
    host = pdn.InMemoryAgentHost(
        replies=["Hello!"], tools={"bash": lambda args: {"exitCode": 0, "stdout": args["command"]}}
    )
    rt = make_runtime(host=host, polling=FIXED).start()
    ids = {label: rt.start_workflow(name, data, instance_id=iid(label)) for label, (name, data) in cases.items()}
    # Signals: one sent before the instance waits (dropped by the engine), then two after.
    rt.signal_workflow(ids["events"], "go", {"n": 0})
    wait_until(lambda: rt.get_workflow(ids["events"]).custom_status == "waiting")
    rt.signal_workflow(ids["events"], "go", {"n": 1})
    wait_until(lambda: rt.get_workflow(ids["events"]).custom_status == "waiting again")
    rt.signal_workflow(ids["events"], "go", {"n": 2})
    wait_until(lambda: rt.get_workflow(ids["race_event"]).custom_status == "racing")
    rt.signal_workflow(ids["race_event"], "approve", {"by": "ada"})
    for instance in ids.values():
        rt.wait_for_workflow(instance, timeout=60)
    yield rt, ids


def test_stepper_outcome_equals_engine_for_every_primitive(finished) -> None:
    rt, ids = finished
    children = {f"child {s.instance_id}": s.instance_id for s in rt.list_workflows(name="child")}
    assert len(children) == 3  # parent's two (one failed) and odds' named one
    checked = 0
    for label, instance in {**ids, **children}.items():
        executions = rt.executions(instance)
        for execution in executions:
            history = pdn.ReplayHistory.from_runtime(rt, instance, execution_id=execution)
            recorded = history.terminal
            assert recorded is not None, f"{label}: execution {execution} did not end"
            stepper = pdn.ReplayStepper(rt, instance, execution=execution)
            assert stepper.divergence is None, f"{label}: {stepper.divergence}"
            outcome = stepper.outcome
            if recorded.kind == "OrchestrationCompleted":
                assert outcome.status == "completed", (label, outcome)
                assert outcome.output_text == recorded.payload_text, label
            elif recorded.kind == "OrchestrationFailed":
                assert outcome.status == "failed", (label, outcome)
                assert outcome.error == _last_line(recorded.error), label
            else:
                assert recorded.kind == "OrchestrationContinuedAsNew"
                assert outcome.status == "continued_as_new", (label, outcome)
                assert outcome.continued_input == recorded.input_text, label
            assert not stepper.warnings, (label, stepper.warnings)
            checked += 1
    # looper ran three executions, the rest one each
    assert checked == len(ids) + len(children) + 2
    # the recorded outcomes themselves are what the code meant (guards against a vacuous pass)
    states = {label: rt.get_workflow(i) for label, i in ids.items()}
    assert states["seq"].output == {"total": 30, "json": {"k": [1, 2.5, "é"]}}
    assert states["caught"].output["type"] == "ValueError"
    assert states["uncaught"].status is pdn.WorkflowStatus.FAILED
    assert states["retry_ok"].output == {"key": "k1", "attempts": 2}
    assert "bad input 3" in states["retry_exhausted"].output["gave_up"]
    assert states["events"].output == {"first": {"n": 1}, "second": {"n": 2}}
    assert states["race_event"].output == {"won": 0, "value": {"by": "ada"}, "lost": 1}
    assert states["fan"].output["oks"] == [True, False, True]
    assert states["parent"].output["a"] == 11 and "negative child input" in states["parent"].output["failure"]
    assert states["odds"].output == {
        "empty": [],
        "bad": "refused",
        "timed_out": "timeout: activity timed out",
        "fast": [0, 8],
        "named": 2,
    }
    assert states["looper"].output == {"rounds": 3, "seen": 2, "status": "round 2"}


def test_stepper_walks_every_step_of_every_history(finished) -> None:
    rt, ids = finished
    for label, instance in ids.items():
        stepper = pdn.ReplayStepper(rt, instance)
        snaps = []
        while not stepper.done:
            snaps.append(stepper.step())
        assert [s.index for s in snaps] == list(range(1, len(snaps) + 1)), label
        assert snaps[-1].kind == "end", (label, snaps[-1])
        assert all(s.from_history for s in snaps), label
        # every history event shows up in exactly one step, except events after the code's end
        shown = [e.event_id for s in snaps for e in s.events]
        assert shown == sorted(set(shown)), label
        assert stepper.steps() == snaps, label
    # a continued execution ends paused at its continue_as_new yield
    first_round = pdn.ReplayStepper(rt, ids["looper"], execution=1)
    end = first_round.run_to_end()
    assert end.kind == "end" and end.task.kind == "continue_as_new" and end.line is not None
    assert end.outcome.status == "continued_as_new" and end.outcome.continued_input == '{"n": 1}'
    assert end.custom_status == "round 0" and end.kv == {"rounds": 1}
    third = pdn.ReplayStepper(rt, ids["looper"], execution=3)
    assert third.history.kv_seed == {"rounds": "2"} and third.step().locals["seen"] == "2"
    # the events workflow shows the dropped early signal in the step that waited on the timer
    stepper = pdn.ReplayStepper(rt, ids["events"])
    timer_step = stepper.step()
    assert timer_step.task.kind == "timer" and timer_step.task.delay_ms == 300
    assert "ExternalEvent" in timer_step.event_kinds
    first_wait = stepper.step()
    assert first_wait.task.kind == "event" and first_wait.value == {"n": 1}
    assert first_wait.custom_status == "waiting"
    assert stepper.step().custom_status == "waiting again"
    assert first_wait.locals["_"] == "None"


def test_stepper_agrees_on_a_cancelled_instance(engine_rt, registry, iid) -> None:
    @registry.register_workflow("cancellable")
    def cancellable(ctx, _):
        yield ctx.schedule_activity("double", 1)
        ctx.set_custom_status("waiting")
        return (yield ctx.wait_for_event("never"))

    instance = engine_rt.start_workflow("cancellable", None, instance_id=iid("cancel"))
    wait_until(lambda: engine_rt.get_workflow(instance).custom_status == "waiting")
    engine_rt.cancel_workflow(instance, "operator said stop")
    state = engine_rt.wait_for_workflow(instance, timeout=30)
    stepper = pdn.ReplayStepper(engine_rt, instance)
    assert stepper.outcome.status == "cancelled"
    assert stepper.outcome.error == state.error == "canceled: operator said stop"
    assert stepper.divergence is None and not stepper.warnings


# --- the engine's nondeterminism verdict ------------------------------------------------------


def _swap_code(definition: pdn.WorkflowDefinition, edited: Callable[..., Any], registry) -> None:
    """Make the running engine replay ``edited`` for instances of ``definition``'s version."""
    swapped = pdn.WorkflowDefinition(name=definition.name, fn=edited, version=definition.version)
    key = f"{definition.name}@{definition.version}"
    assert key in duroxide._orchestration_functions
    duroxide._orchestration_functions[key] = _orchestration(swapped, registry)


def _engine_verdict(rt, registry, name: str, original, edited, iid) -> tuple[str, pdn.ReplayStepper]:
    registry.register_workflow(name, original)
    instance = rt.start_workflow(name, None, instance_id=iid(name))
    wait_until(lambda: rt.get_workflow(instance).custom_status == "waiting")
    _swap_code(registry.workflow(name), edited, registry)
    rt.signal_workflow(instance, "go", {"ok": True})
    state = rt.wait_for_workflow(instance, timeout=30)
    return state.error or "", pdn.ReplayStepper(rt, instance, workflow=edited)


def _reason_of(engine_error: str) -> str:
    assert engine_error.startswith("nondeterministic: "), engine_error
    return engine_error.removeprefix("nondeterministic: ").split(": action=")[0].split(" action=")[0]


@pytest.fixture
def engine_rt(registry, make_runtime):
    @registry.register_activity("double")
    def double(ctx, x):
        return x * 2

    return make_runtime(polling=FIXED).start()


def test_engine_and_stepper_agree_on_schedule_mismatch(engine_rt, registry, iid) -> None:
    def original(ctx, _):
        a = yield ctx.schedule_activity("double", 1)
        ctx.set_custom_status("waiting")
        yield ctx.wait_for_event("go")
        return a

    def edited(ctx, _):
        a = yield ctx.schedule_activity("double", 2)
        ctx.set_custom_status("waiting")
        yield ctx.wait_for_event("go")
        return a

    error, stepper = _engine_verdict(engine_rt, registry, "nd_input", original, edited, iid)
    assert _reason_of(error) == "schedule mismatch"
    assert stepper.divergence is not None and stepper.divergence.reason == _reason_of(error)
    assert stepper.divergence.step == 1
    assert stepper.divergence.expected.kind == "ActivityScheduled" and stepper.divergence.expected.input_text == "1"
    assert stepper.divergence.actual == "ActivityScheduled double(2)"
    assert stepper.divergence.engine_message == error  # word for word, in the engine's notation
    assert stepper.outcome.status == "nondeterministic"


def _missing_original(ctx, _):
    yield ctx.all([ctx.schedule_activity("double", 1), ctx.schedule_activity("double", 2)])
    ctx.set_custom_status("waiting")
    return (yield ctx.wait_for_event("go"))


def _missing_edited(ctx, _):
    yield ctx.schedule_activity("double", 1)
    ctx.set_custom_status("waiting")
    return (yield ctx.wait_for_event("go"))


def _status_original(ctx, _):
    ctx.set_custom_status("waiting")
    yield ctx.schedule_activity("double", 1)
    return (yield ctx.wait_for_event("go"))


def _status_edited(ctx, _):
    yield ctx.schedule_activity("double", 1)
    ctx.set_custom_status("waiting")
    return (yield ctx.wait_for_event("go"))


def _kv_code(steps: int) -> Callable[..., Any]:
    def code(ctx, _):
        ctx.kv.set("plan", {"steps": steps})
        ctx.set_custom_status("waiting")
        return (yield ctx.wait_for_event("go"))

    return code


def _first_task_code(first: Callable[[Any], Any]) -> Callable[..., Any]:
    def code(ctx, _):
        yield first(ctx)
        ctx.set_custom_status("waiting")
        return (yield ctx.wait_for_event("go"))

    return code


def _event_code(name: str) -> Callable[..., Any]:
    def code(ctx, _):
        ctx.set_custom_status("waiting")
        return (yield ctx.wait_for_event(name))

    return code


def _sub_after_state(x: int) -> Callable[..., Any]:
    def code(ctx, _):
        ctx.set_custom_status("starting")
        ctx.kv.set("k", 1)
        yield ctx.schedule_activity("double", 1)
        yield ctx.schedule_sub_orchestration("nd_child", x)
        ctx.set_custom_status("waiting")
        return (yield ctx.wait_for_event("go"))

    return code


# name: (original, edited, the engine's reason, whether the stepper repeats the engine's message word for word)
_EDITS: dict[str, tuple[Callable[..., Any], Callable[..., Any], str, bool]] = {
    "nd_missing": (_missing_original, _missing_edited, "history schedule but no emitted action", True),
    "nd_status": (_status_original, _status_edited, "custom status mismatch", True),
    "nd_kv": (_kv_code(1), _kv_code(2), "kv set mismatch", False),
    "nd_kind": (
        _first_task_code(lambda ctx: ctx.schedule_timer(1)),
        _first_task_code(lambda ctx: ctx.schedule_activity("double", 1)),
        "schedule mismatch",
        False,
    ),
    "nd_sub": (
        _first_task_code(lambda ctx: ctx.schedule_sub_orchestration("nd_child", 1)),
        _first_task_code(lambda ctx: ctx.schedule_sub_orchestration("nd_child", 2)),
        "schedule mismatch",
        True,
    ),
    "nd_sub_later": (_sub_after_state(1), _sub_after_state(2), "schedule mismatch", True),
    "nd_event": (_event_code("go"), _event_code("go-renamed"), "schedule mismatch", True),
}


@pytest.mark.parametrize("name", list(_EDITS))
def test_engine_and_stepper_agree_on_edited_code(engine_rt, registry, iid, name) -> None:
    original, edited, reason, word_for_word = _EDITS[name]

    @registry.register_workflow("nd_child")
    def nd_child(ctx, x):
        return (yield ctx.schedule_activity("double", x))

    error, stepper = _engine_verdict(engine_rt, registry, name, original, edited, iid)
    assert _reason_of(error) == reason
    assert stepper.divergence is not None and stepper.divergence.reason == reason
    assert stepper.outcome.status == "nondeterministic"
    if word_for_word:
        assert stepper.divergence.engine_message == error
    else:
        assert error.startswith(stepper.divergence.engine_message.split(": action=")[0])


def _early_return(ctx, _):
    yield ctx.all([ctx.schedule_activity("double", 1), ctx.schedule_activity("double", 2)])
    return "early"


def _named_child(instance_id: str) -> Callable[..., Any]:
    def code(ctx, _):
        yield ctx.schedule_sub_orchestration("nd_child", 1, instance_id=f"{ctx.instance_id}-{instance_id}")
        ctx.set_custom_status("waiting")
        return (yield ctx.wait_for_event("go"))

    return code


# name: (original, edited, the warnings the stepper gives for an edit the engine accepts)
_ACCEPTED: dict[str, tuple[Callable[..., Any], Callable[..., Any], list[str]]] = {
    "ok_early": (_missing_original, _early_return, ["returned_early"]),
    "ok_child_id": (_named_child("a"), _named_child("b"), ["sub_workflow_id_changed"]),
}


@pytest.mark.parametrize("name", list(_ACCEPTED))
def test_engine_accepts_silent_edits_and_stepper_warns(engine_rt, registry, iid, name) -> None:
    original, edited, warnings = _ACCEPTED[name]

    @registry.register_workflow("nd_child")
    def nd_child(ctx, x):
        return (yield ctx.schedule_activity("double", x))

    error, stepper = _engine_verdict(engine_rt, registry, name, original, edited, iid)
    state = engine_rt.get_workflow(stepper.history.instance_id)
    assert (state.status, error) == (pdn.WorkflowStatus.COMPLETED, "")
    assert stepper.divergence is None
    assert stepper.outcome.status == "completed" and stepper.outcome.output_text == json.dumps(state.output)
    assert [w.kind for w in stepper.warnings] == warnings


def test_engine_accepts_changed_timer_delay_and_stepper_warns(engine_rt, registry, iid) -> None:
    def original(ctx, _):
        yield ctx.schedule_timer(timedelta(seconds=2))
        return "never"

    def edited(ctx, _):
        yield ctx.schedule_timer(timedelta(milliseconds=10))
        return "edited"

    registry.register_workflow("nd_timer", original)
    instance = engine_rt.start_workflow("nd_timer", None, instance_id=iid("timer"))
    wait_until(lambda: any(e.kind == "TimerCreated" for e in engine_rt.history(instance)))
    _swap_code(registry.workflow("nd_timer"), edited, registry)
    state = engine_rt.wait_for_workflow(instance, timeout=30)
    assert state.status is pdn.WorkflowStatus.COMPLETED and state.output == "edited"
    stepper = pdn.ReplayStepper(engine_rt, instance, workflow=edited)
    assert stepper.divergence is None
    assert stepper.outcome.output_text == json.dumps("edited")
    assert [w.kind for w in stepper.warnings] == ["timer_delay_changed"]
    # the same history replays with the original code and no warning
    original_stepper = pdn.ReplayStepper(engine_rt, instance, workflow=original)
    assert original_stepper.divergence is None
    assert [w.kind for w in original_stepper.warnings] == ["outcome_changed"]
