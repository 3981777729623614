from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import pi_duroxide_nb as pdn
from tests.conftest import wait_until

DONE = pdn.WorkflowStatus.COMPLETED
FAILED = pdn.WorkflowStatus.FAILED


def wait_for_status(rt: pdn.WorkflowRuntime, iid: str, status: str) -> None:
    wait_until(lambda: rt.get_workflow(iid).custom_status == status)


# --- the example -------------------------------------------------------------------


def test_deploy_example_end_to_end(registry, make_runtime, iid) -> None:
    fetched: list[str] = []

    @registry.register_activity("fetch")
    def fetch(ctx, url):
        fetched.append(url)
        return {"url": url, "ok": True}

    @registry.register_workflow("deploy", description="Build, test and deploy a service")
    def deploy(ctx, input):
        build = yield ctx.pi.tool("bash", {"command": "make build"})
        page = yield ctx.schedule_activity("fetch", f"https://{input['service']}")
        ctx.set_custom_status("awaiting-approval")
        decision = yield ctx.wait_for_event("deploy-decision")
        if decision["action"] != "approve":
            return {"status": "rejected"}
        yield ctx.pi.send_message(f"deployed {input['service']}")
        return {"status": "deployed", "build": build["exitCode"], "page": page}

    host = pdn.InMemoryAgentHost(tools={"bash": lambda args: {"exitCode": 0, "stdout": args["command"]}})
    rt = make_runtime(host=host)
    rt.start()
    instance = rt.start_workflow("deploy", {"service": "api"}, instance_id=iid("deploy"))
    wait_for_status(rt, instance, "awaiting-approval")
    running = rt.get_workflow(instance)
    assert running.status is pdn.WorkflowStatus.RUNNING
    rt.signal_workflow(instance, "deploy-decision", {"action": "approve"})
    state = rt.wait_for_workflow(instance, timeout=30)

    assert state.status is DONE
    assert state.output == {"status": "deployed", "build": 0, "page": {"url": "https://api", "ok": True}}
    assert state.name == "deploy" and state.version == registry.workflow("deploy").version
    assert state.custom_status == "awaiting-approval"
    assert state.created_at is not None and state.updated_at is not None
    assert state.created_at <= state.updated_at and state.created_at.tzinfo is not None
    assert state.parent_instance_id is None
    assert host.messages == ["deployed api"]
    assert fetched == ["https://api"]  # replays never re-ran the activity

    events = rt.history(instance)
    kinds = [e.kind for e in events]
    assert kinds[0] == "OrchestrationStarted" and kinds[-1] == "OrchestrationCompleted"
    assert events[0].input == {"service": "api"}
    tool = next(e for e in events if e.kind == "ActivityScheduled" and e.name == "__pi_tool")
    assert tool.input == {"name": "bash", "args": {"command": "make build"}}
    signal = next(e for e in events if e.kind == "ExternalEvent")
    assert signal.name == "deploy-decision" and signal.data == {"action": "approve"}
    status = next(e for e in events if e.kind == "CustomStatusUpdated")
    assert status.details["status"] == "awaiting-approval"
    assert events[-1].output == state.output
    execution, rows = rt.history_rows(instance)
    assert execution == 1 and len(rows) == len(events)
    assert json.loads(rows[0])["input"] == '{"service": "api"}'  # payloads as the engine stored them: text


# --- lifecycle --------------------------------------------------------------------------------


def test_start_is_idempotent_and_shutdown_is_safe_twice(make_runtime) -> None:
    rt = make_runtime()
    assert rt.state is pdn.RuntimeState.CREATED
    assert rt.start() is rt.start()
    assert rt.state is pdn.RuntimeState.RUNNING
    rt.shutdown()
    rt.shutdown()
    assert rt.state is pdn.RuntimeState.STOPPED
    with pytest.raises(pdn.RuntimeStateError, match="Create a new WorkflowRuntime"):
        rt.start()


def test_context_manager_starts_and_stops(make_runtime) -> None:
    with make_runtime() as rt:
        assert rt.state is pdn.RuntimeState.RUNNING
    assert rt.state is pdn.RuntimeState.STOPPED


def test_default_db_path_honours_env(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PI_DUROXIDE_DB", str(tmp_path / "env.db"))
    assert pdn.default_db_path() == tmp_path / "env.db"
    assert pdn.WorkflowRuntime().db == str((tmp_path / "env.db").resolve())
    monkeypatch.delenv("PI_DUROXIDE_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert pdn.default_db_path() == tmp_path / "xdg" / "pi_duroxide_nb" / "workflows.db"


def test_pi_store_is_not_shared_silently(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    import pi_duroxide_nb.engine._runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_PI_DEFAULT_DB", tmp_path / ".pi" / "agent" / "workflows.db")
    with pytest.raises(pdn.RuntimeStateError, match="pi coding agent"):
        pdn.WorkflowRuntime(db=tmp_path / ".pi" / "agent" / "workflows.db")
    rt = pdn.WorkflowRuntime(db=tmp_path / ".pi" / "agent" / "workflows.db", share_with_pi=True)
    assert rt.state is pdn.RuntimeState.CREATED


# --- bad input never touches the store --------------------------------------------------------


class Order(BaseModel):
    item: str
    qty: int


class Receipt(BaseModel):
    item: str
    total: int


@pytest.fixture
def order_runtime(registry, make_runtime):
    @registry.register_workflow("order", input_model=Order, output_model=Receipt)
    def order(ctx, input: Order):
        assert isinstance(input, Order)
        yield ctx.schedule_timer(1)
        return Receipt(item=input.item, total=input.qty * 3)

    @registry.register_workflow("plain")
    def plain(ctx, input):
        yield ctx.schedule_timer(1)

    return make_runtime().start()


def test_models_validate_input_and_type_output(order_runtime, iid) -> None:
    rt = order_runtime
    instance = rt.start_workflow("order", {"item": "tea", "qty": 2}, instance_id=iid())
    state = rt.wait_for_workflow(instance, timeout=30)
    assert state.status is DONE
    assert state.output == Receipt(item="tea", total=6)


def test_bad_inputs_raise_and_persist_nothing(order_runtime, iid) -> None:
    rt = order_runtime
    with pytest.raises(pdn.ModelValidationError, match="qty") as info:
        rt.start_workflow("order", {"item": "tea", "qty": "many"}, instance_id=iid())
    assert info.value.fields == ("qty",)
    with pytest.raises(pdn.PayloadError, match="item: Input should be a valid string"):
        rt.start_workflow("order", {"item": object(), "qty": 1})
    with pytest.raises(pdn.PayloadError, match=r"not JSON-serializable: \$\.when is a datetime"):
        rt.start_workflow("plain", {"when": datetime.now()})
    with pytest.raises(pdn.WorkflowNotFoundError, match="'ordr'.*'order'"):
        rt.start_workflow("ordr", {"item": "tea", "qty": 1})
    assert rt.list_workflows() == []


def test_duplicate_instance_id_is_refused(order_runtime, iid) -> None:
    rt = order_runtime
    instance = rt.start_workflow("order", {"item": "tea", "qty": 1}, instance_id=iid())
    with pytest.raises(pdn.InstanceExistsError, match="already exists"):
        rt.start_workflow("order", {"item": "coffee", "qty": 9}, instance_id=instance)
    state = rt.wait_for_workflow(instance, timeout=30)
    assert state.output == Receipt(item="tea", total=3)
    assert [s.instance_id for s in rt.list_workflows()] == [instance]


def test_bad_signals_raise_and_persist_nothing(registry, make_runtime, iid) -> None:
    @registry.register_workflow("waiter")
    def waiter(ctx, _):
        ctx.set_custom_status("waiting")
        data = yield ctx.wait_for_event("go")
        return data

    rt = make_runtime().start()
    instance = rt.start_workflow("waiter", None, instance_id=iid())
    wait_for_status(rt, instance, "waiting")
    before = rt.history(instance)
    with pytest.raises(pdn.PayloadError, match="not JSON-serializable"):
        rt.signal_workflow(instance, "go", {"when": datetime.now()})
    with pytest.raises(pdn.PayloadError, match="event_name"):
        rt.signal_workflow(instance, "", 1)
    with pytest.raises(pdn.InstanceNotFoundError):
        rt.signal_workflow(iid("nobody"), "go", 1)
    assert rt.history(instance) == before
    rt.signal_workflow(instance, "go", {"ok": 1})
    assert rt.wait_for_workflow(instance, timeout=30).output == {"ok": 1}


def test_unknown_instances(rt: pdn.WorkflowRuntime, iid) -> None:
    missing = iid("missing")
    for call in (rt.get_workflow, rt.history, rt.history_rows, rt.cancel_workflow):
        with pytest.raises(pdn.InstanceNotFoundError, match=missing):
            call(missing)
    with pytest.raises(pdn.InstanceNotFoundError):
        rt.wait_for_workflow(missing, timeout=1)


# --- the workflow context -----------------------------------------------------------------------


def test_errors_reach_the_workflow_typed_and_catchable(registry, rt, iid) -> None:
    @registry.register_activity("boom")
    def boom(ctx, x):
        raise ValueError(f"bad input {x}")

    @registry.register_workflow("catcher")
    def catcher(ctx, _):
        try:
            yield ctx.schedule_activity("boom", 42)
        except pdn.ActivityError as err:
            return {"str": str(err), "type": err.error_type, "msg": err.error_message, "activity": err.activity}

    state = rt.wait_for_workflow(rt.start_workflow("catcher", None, instance_id=iid()), timeout=30)
    assert state.output["type"] == "ValueError"
    assert state.output["msg"] == "bad input 42"
    assert state.output["activity"] == "boom"
    assert "bad input 42" in state.output["str"]


def test_uncaught_errors_fail_the_instance_with_the_message(registry, rt, iid) -> None:
    @registry.register_workflow("fails")
    def fails(ctx, _):
        yield ctx.schedule_timer(1)
        raise RuntimeError("the build is broken")

    state = rt.wait_for_workflow(rt.start_workflow("fails", None, instance_id=iid()), timeout=30)
    assert state.status is FAILED
    assert "RuntimeError: the build is broken" in (state.error or "")


def test_yielding_a_plain_value_fails_clearly(registry, rt, iid) -> None:
    @registry.register_workflow("yields-int")
    def yields_int(ctx, _):
        yield 42

    state = rt.wait_for_workflow(rt.start_workflow("yields-int", None, instance_id=iid()), timeout=30)
    assert state.status is FAILED
    assert "yielded 42 (int), which is not a durable task" in (state.error or "")


def test_non_json_activity_input_raises_inside_the_workflow(registry, rt, iid) -> None:
    @registry.register_workflow("bad-input")
    def bad_input(ctx, _):
        try:
            yield ctx.schedule_activity("x", {"s": {1, 2}}, tag="remote")
        except pdn.PayloadError as err:
            return str(err)

    state = rt.wait_for_workflow(rt.start_workflow("bad-input", None, instance_id=iid()), timeout=30)
    assert "the input of activity 'x' is not JSON-serializable: $.s is a set" in state.output


def test_time_ids_timers_kv_and_status(registry, rt, iid) -> None:
    @registry.register_workflow("prims")
    def prims(ctx, _):
        start = yield ctx.utc_now()
        guid = yield ctx.new_guid()
        yield ctx.schedule_timer(timedelta(milliseconds=20))
        yield ctx.schedule_timer(5)
        ctx.kv.set("progress", {"done": [1, 2]})
        ctx.kv.set("gone", 1)
        ctx.kv.delete("gone")
        ctx.set_custom_status({"phase": "end"})
        ctx.trace_info("no print() in workflows")
        end = yield ctx.utc_now()
        return {
            "aware": start.tzinfo is not None,
            "elapsed_ms": (end - start).total_seconds() * 1000,
            "start": start.isoformat(),
            "guid": guid,
            "kv": ctx.kv.get("progress"),
            "has_gone": "gone" in ctx.kv,
            "keys": ctx.kv.keys(),
            "id": ctx.instance_id,
        }

    instance = rt.start_workflow("prims", None, instance_id=iid())
    state = rt.wait_for_workflow(instance, timeout=30)
    out = state.output
    assert out["aware"] is True
    assert out["elapsed_ms"] >= 20
    assert abs(datetime.fromisoformat(out["start"]) - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert len(out["guid"]) == 36
    assert out["kv"] == {"done": [1, 2]} and out["has_gone"] is False and out["keys"] == ["progress"]
    assert out["id"] == instance
    assert state.custom_status == '{"phase": "end"}'
    assert rt.get_kv(instance) == {"progress": {"done": [1, 2]}}
    assert rt.get_kv(instance, "progress") == {"done": [1, 2]} and rt.get_kv(instance, "absent") is None


def test_all_returns_values_raises_or_gives_outcomes(registry, rt, iid) -> None:
    registry.register_activity("double", lambda ctx, x: x * 2)

    @registry.register_activity("fail")
    def fail(ctx, x):
        raise KeyError(x)

    @registry.register_workflow("fan")
    def fan(ctx, n):
        values = yield ctx.all([ctx.schedule_activity("double", i) for i in range(n)] + [ctx.schedule_timer(1)])
        outcomes = yield ctx.all(
            [ctx.schedule_activity("double", 1), ctx.schedule_activity("fail", "k")], return_outcomes=True
        )
        try:
            yield ctx.all([ctx.schedule_activity("double", 1), ctx.schedule_activity("fail", "j")])
            raised = None
        except pdn.ActivityError as err:
            raised = err.error_type
        try:
            ctx.all([ctx.utc_now()])
        except pdn.PayloadError as err:
            refused = str(err)
        return {"values": values, "outcomes": [o.model_dump() for o in outcomes], "raised": raised, "refused": refused}

    out = rt.wait_for_workflow(rt.start_workflow("fan", 5, instance_id=iid()), timeout=30).output
    assert out["values"] == [0, 2, 4, 6, 8, None]
    assert out["outcomes"][0] == {"ok": True, "value": 2, "error": None}
    assert out["outcomes"][1]["ok"] is False and "KeyError" in out["outcomes"][1]["error"]
    assert out["raised"] == "KeyError"
    assert "cannot run utc_now tasks" in out["refused"]


def test_race_reports_the_winner(registry, rt, iid) -> None:
    @registry.register_workflow("racer")
    def racer(ctx, _):
        ctx.set_custom_status("racing")
        first = yield ctx.race(ctx.wait_for_event("approve"), ctx.schedule_timer(timedelta(seconds=30)))
        second = yield ctx.race(ctx.wait_for_event("never"), ctx.schedule_timer(10))
        return [first.model_dump(), second.model_dump()]

    instance = rt.start_workflow("racer", None, instance_id=iid())
    wait_for_status(rt, instance, "racing")
    rt.signal_workflow(instance, "approve", "yes")
    out = rt.wait_for_workflow(instance, timeout=30).output
    assert out == [{"index": 0, "value": "yes"}, {"index": 1, "value": None}]


def test_retry_policy_retries_until_success(registry, rt, iid) -> None:
    attempts: list[int] = []

    @registry.register_activity("flaky")
    def flaky(ctx, x):
        attempts.append(x)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    @registry.register_workflow("retrying")
    def retrying(ctx, _):
        ok = yield ctx.schedule_activity_with_retry("flaky", 7, attempts=3, timeout=timedelta(seconds=5))
        return ok

    state = rt.wait_for_workflow(rt.start_workflow("retrying", None, instance_id=iid()), timeout=30)
    assert state.output == "ok"
    assert attempts == [7, 7, 7]


def test_an_activity_registered_later_waits_visibly_then_runs(registry, rt, iid) -> None:
    # Cell order must not cost an instance: the activity's cell may run after the workflow's.
    @registry.register_workflow("needs-later")
    def needs_later(ctx, _):
        return (yield ctx.schedule_activity_with_retry("later", 2, pdn.RetryPolicy(attempts=1)))

    instance = rt.start_workflow("needs-later", None, instance_id=iid())
    state = wait_until(lambda: (s := rt.get_workflow(instance)).blocked and s, timeout=15)
    assert state.status in (pdn.WorkflowStatus.RUNNING, pdn.WorkflowStatus.PENDING)  # unfinished, not failed
    assert state.blocked.startswith("activity missing: 'later' is not registered")
    started = time.monotonic()
    registry.register_activity("later", lambda ctx, x: x * 21)
    assert rt.wait_for_workflow(instance, timeout=30).output == 42
    assert time.monotonic() - started < 3  # made visible again at registration


def test_sub_workflows_and_continue_as_new(registry, rt, iid) -> None:
    @registry.register_workflow("child")
    def child(ctx, n):
        yield ctx.schedule_timer(1)
        return n * 10

    @registry.register_workflow("looper")
    def looper(ctx, state):
        value = yield ctx.schedule_sub_orchestration("child", state["n"])
        total = state["total"] + value
        if state["n"] < 3:
            yield ctx.continue_as_new({"n": state["n"] + 1, "total": total})
        return {"total": total, "execution": ctx.execution_id}

    instance = rt.start_workflow("looper", {"n": 1, "total": 0}, instance_id=iid())
    state = rt.wait_for_workflow(instance, timeout=30)
    assert state.output == {"total": 60, "execution": 3}
    assert state.execution_id == 3
    assert rt.executions(instance) == [1, 2, 3]
    assert rt.history(instance, execution_id=1)[-1].kind == "OrchestrationContinuedAsNew"
    children = rt.list_workflows(name="child")
    assert len(children) == 3 and {c.parent_instance_id for c in children} == {instance}


def test_cancel_ends_an_instance(registry, rt, iid) -> None:
    @registry.register_workflow("forever")
    def forever(ctx, _):
        ctx.set_custom_status("waiting")
        yield ctx.wait_for_event("never")

    instance = rt.start_workflow("forever", None, instance_id=iid())
    wait_for_status(rt, instance, "waiting")
    rt.cancel_workflow(instance, "no longer needed")
    state = rt.wait_for_workflow(instance, timeout=30)
    assert state.status is pdn.WorkflowStatus.TERMINATED and "no longer needed" in (state.error or "")


def test_wait_times_out_without_stopping_the_instance(registry, rt, iid) -> None:
    @registry.register_workflow("slow")
    def slow(ctx, _):
        yield ctx.wait_for_event("go")
        return "done"

    instance = rt.start_workflow("slow", None, instance_id=iid())
    with pytest.raises(pdn.WorkflowTimeoutError, match="still running"):
        rt.wait_for_workflow(instance, timeout=0.3)
    assert rt.get_workflow(instance).status in (pdn.WorkflowStatus.RUNNING, pdn.WorkflowStatus.PENDING)


def test_a_start_is_listed_and_counted_at_once(registry, rt, iid) -> None:
    @registry.register_workflow("parked")
    def parked(ctx, _):
        yield ctx.wait_for_event("never")

    @registry.register_workflow("other")
    def other(ctx, _):
        yield ctx.wait_for_event("never")

    rt.start_workflow("other", None, instance_id=iid("other"))
    for n in range(1, 61):  # whether still queued or already picked up, never missed or counted twice
        instance = rt.start_workflow("parked", None, instance_id=iid("parked"))
        assert sum(rt.count_workflows(name="parked").values()) == n
        assert instance in {s.instance_id for s in rt.list_workflows(name="parked", limit=5)}
        assert rt.get_workflow(instance).name == "parked"


def test_list_filters_by_name_and_status(registry, rt, iid) -> None:
    @registry.register_workflow("quick")
    def quick(ctx, x):
        yield ctx.schedule_timer(1)
        return x

    @registry.register_workflow("stuck")
    def stuck(ctx, x):
        ctx.set_custom_status("stuck")
        yield ctx.wait_for_event("never")

    done = rt.start_workflow("quick", 1, instance_id=iid())
    waiting = rt.start_workflow("stuck", 2, instance_id=iid())
    rt.wait_for_workflow(done, timeout=30)
    wait_for_status(rt, waiting, "stuck")
    assert [s.instance_id for s in rt.list_workflows(name="quick")] == [done]
    assert [s.instance_id for s in rt.list_workflows(status="Running")] == [waiting]
    assert [s.instance_id for s in rt.list_workflows(name="stuck", status=DONE)] == []
    with pytest.raises(pdn.PayloadError, match="Use one of"):
        rt.list_workflows(status="Finished")


def test_async_activities_run(registry, rt, iid) -> None:
    import asyncio

    @registry.register_activity("sleepy")
    async def sleepy(ctx, x):
        await asyncio.sleep(0.01)
        return {"x": x, "name": ctx.activity_name, "instance": ctx.instance_id}

    @registry.register_workflow("uses-async")
    def uses_async(ctx, x):
        return (yield ctx.schedule_activity("sleepy", x))

    instance = rt.start_workflow("uses-async", 3, instance_id=iid())
    assert rt.wait_for_workflow(instance, timeout=30).output == {"x": 3, "name": "sleepy", "instance": instance}


# --- ctx.pi ------------------------------------------------------------------------------------------


def test_pi_calls_use_pi_shapes_and_strip_timestamps(registry, make_runtime, iid) -> None:
    @registry.register_workflow("agent")
    def agent(ctx, _):
        reply = yield ctx.pi.llm([{"role": "user", "content": "hi", "timestamp": 123}], model="m", timestamp=9)
        skill = yield ctx.pi.skill("review", {"diff": "x", "meta": {"timestamp": 1}})
        answer = yield ctx.pi.prompt("summarize", thinking="low")
        sent = yield ctx.pi.send_message("done")
        return [reply, skill, answer, sent]

    host = pdn.InMemoryAgentHost(replies=["hello", "looks good", "summary"], skills={"review": "You review code."})
    rt = make_runtime(host=host).start()
    instance = rt.start_workflow("agent", None, instance_id=iid())
    out = rt.wait_for_workflow(instance, timeout=30).output
    assert out[0] == {"role": "assistant", "content": "hello"}
    assert out[1] == {"role": "assistant", "content": "looks good"}
    assert out[2] == {"role": "assistant", "content": "summary"}
    assert out[3] == {"sent": True}
    inputs = {e.name: e.input for e in rt.history(instance) if e.kind == "ActivityScheduled"}
    assert inputs["__pi_llm"] == {"messages": [{"role": "user", "content": "hi"}], "options": {"model": "m"}}
    assert inputs["__pi_skill"] == {"name": "review", "input": {"diff": "x", "meta": {}}}
    assert inputs["__pi_prompt"] == {"prompt": "summarize", "options": {"thinking": "low"}}
    assert inputs["__pi_sendMessage"] == {"content": "done"}
    assert [c.method for c in host.calls] == ["llm", "skill", "prompt", "send_message"]


def test_pi_call_without_host_waits_visibly_and_runs_when_one_is_bound(registry, rt, iid) -> None:
    @registry.register_workflow("needs-host")
    def needs_host(ctx, _):
        ctx.set_custom_status("calling")
        return (yield ctx.pi.tool("echo", {"x": 1}))

    instance = rt.start_workflow("needs-host", None, instance_id=iid())
    state = wait_until(lambda: (s := rt.get_workflow(instance)).blocked and s, timeout=15)
    assert state.status in (pdn.WorkflowStatus.RUNNING, pdn.WorkflowStatus.PENDING)  # unfinished, not failed
    assert state.blocked.startswith("waiting for an agent host") and "set_host" in state.blocked
    listed = {s.instance_id: s for s in rt.list_workflows()}
    assert listed[instance].blocked == state.blocked
    # Several engine retries later it is still waiting, not failed (the engine backs off 1, 2, 4 s).
    with pytest.raises(pdn.WorkflowTimeoutError):
        rt.wait_for_workflow(instance, timeout=4)
    started = time.monotonic()
    rt.set_host(pdn.InMemoryAgentHost(tools={"echo": lambda args: args}))
    done = rt.wait_for_workflow(instance, timeout=30)
    assert done.status is pdn.WorkflowStatus.COMPLETED and done.output == {"x": 1} and done.blocked is None
    # The waiting call is made visible again when the host is bound, not at the engine's next retry.
    assert time.monotonic() - started < 3


def test_set_host_takes_effect_at_once(registry, rt, iid) -> None:
    @registry.register_workflow("tooling")
    def tooling(ctx, _):
        return (yield ctx.pi.tool("echo", {"x": 1}))

    rt.set_host(pdn.InMemoryAgentHost(tools={"echo": lambda args: args}))
    assert rt.wait_for_workflow(rt.start_workflow("tooling", None, instance_id=iid()), timeout=30).output == {"x": 1}


def test_current_activity_names_the_calling_instance(registry, rt, iid) -> None:
    @registry.register_activity("whoami")
    def whoami(ctx, _):
        current = pdn.current_activity()
        return [current.instance_id, current.activity_name, current is not None and ctx.instance_id]

    @registry.register_workflow("who")
    def who(ctx, _):
        mine = yield ctx.schedule_activity("whoami", None)
        host = yield ctx.pi.tool("whoami", {})
        return {"mine": mine, "host": host}

    def host_tool(_args):
        current = pdn.current_activity()
        return [current.instance_id, current.activity_name, current.workflow_name]

    rt.set_host(pdn.InMemoryAgentHost(tools={"whoami": host_tool}))
    instance = iid()
    out = rt.wait_for_workflow(rt.start_workflow("who", None, instance_id=instance), timeout=30).output
    assert out == {"mine": [instance, "whoami", instance], "host": [instance, "__pi_tool", "who"]}
    assert pdn.current_activity() is None


# --- re-registration, late registration, adaptive polling ----------------------------------------------


def test_late_registrations_take_effect(registry, rt, iid) -> None:
    registry.register_activity("late-act", lambda ctx, x: x + 1)

    @registry.register_workflow("late-wf")
    def late_wf(ctx, x):
        return (yield ctx.schedule_activity("late-act", x))

    assert rt.wait_for_workflow(rt.start_workflow("late-wf", 1, instance_id=iid()), timeout=30).output == 2


def _cell(source: str):
    namespace: dict[str, Any] = {}
    exec(compile(source, "<cell>", "exec"), namespace)
    return namespace["review"]


def test_editing_a_workflow_mid_flight_keeps_old_instances_on_old_code(registry, rt, iid) -> None:
    registry.register_activity("draft", lambda ctx, x: f"draft:{x}")
    registry.register_activity("polish", lambda ctx, x: f"polish:{x}")
    v1 = _cell(
        "def review(ctx, x):\n"
        "    a = yield ctx.schedule_activity('draft', x)\n"
        "    ctx.set_custom_status('waiting')\n"
        "    yield ctx.wait_for_event('go')\n"
        "    return ['v1', a]\n"
    )
    v2 = _cell(
        "def review(ctx, x):\n"
        "    a = yield ctx.schedule_activity('polish', x)\n"
        "    ctx.set_custom_status('waiting')\n"
        "    yield ctx.wait_for_event('go')\n"
        "    return ['v2', a]\n"
    )
    registry.register_workflow("review", v1)
    old = rt.start_workflow("review", "a", instance_id=iid("old"))
    wait_for_status(rt, old, "waiting")

    registry.register_workflow("review", v2)  # the cell is edited and re-run
    new = rt.start_workflow("review", "b", instance_id=iid("new"))
    wait_for_status(rt, new, "waiting")
    for instance in (old, new):
        rt.signal_workflow(instance, "go", None)

    old_state, new_state = rt.wait_for_workflow(old, timeout=30), rt.wait_for_workflow(new, timeout=30)
    assert old_state.status is DONE and old_state.output == ["v1", "draft:a"]
    assert new_state.status is DONE and new_state.output == ["v2", "polish:b"]
    versions = [d.version for d in registry.versions("review")]
    assert [old_state.version, new_state.version] == versions


def test_engine_idles_and_wakes(registry, make_runtime, iid) -> None:
    @registry.register_workflow("tick")
    def tick(ctx, _):
        yield ctx.schedule_timer(1)
        return "tock"

    polling = pdn.PollingConfig(idle_after=timedelta(milliseconds=200))
    rt = make_runtime(polling=polling).start()
    wait_until(lambda: rt.engine_mode == "idle", timeout=10)
    instance = rt.start_workflow("tick", None, instance_id=iid())
    assert rt.wait_for_workflow(instance, timeout=30).output == "tock"
    wait_until(lambda: rt.engine_mode == "idle", timeout=10)


def test_a_long_activity_lets_the_engine_idle_and_still_runs_once(registry, make_runtime, iid) -> None:
    # An LLM call of minutes must not keep the kernel polling at full speed. The runtime that
    # is replaced when the engine idles finishes the activity and keeps renewing its lock: no
    # other runtime takes it over in two lease lengths (2 s each).
    started, again, release = threading.Event(), threading.Event(), threading.Event()
    runs: list[int] = []

    @registry.register_activity("think")
    def think(ctx, x):
        runs.append(x)
        (again if started.is_set() and x == 5 else started).set()
        assert release.wait(timeout=60)
        return x * 2

    @registry.register_workflow("agent")
    def agent(ctx, x):
        first = yield ctx.schedule_activity("think", x)
        second = yield ctx.schedule_activity("think", first)
        return second

    polling = pdn.PollingConfig(idle_after=timedelta(milliseconds=200))
    rt = make_runtime(polling=polling).start()
    instance = rt.start_workflow("agent", 5, instance_id=iid())
    assert started.wait(timeout=30)
    wait_until(lambda: rt.engine_mode == "idle", timeout=10)  # while "think" still runs
    assert not again.wait(timeout=4.5), "the activity was taken over and run a second time"
    release.set()
    state = rt.wait_for_workflow(instance, timeout=30)
    assert state.status is DONE and state.output == 20
    assert runs == [5, 10]
    kinds = [e.kind for e in rt.history(instance)]
    assert kinds.count("ActivityScheduled") == 2 and kinds.count("ActivityCompleted") == 2


def test_fixed_polling_never_idles(make_runtime) -> None:
    polling = pdn.PollingConfig.fixed(timedelta(milliseconds=20))
    assert not polling.adaptive
    rt = make_runtime(polling=polling).start()
    assert rt.engine_mode == "active"
    with pytest.raises(ValueError, match="at least 1 ms"):
        pdn.PollingConfig(active_interval=timedelta(0))


def test_a_lock_lease_too_short_for_the_engine_is_refused(registry) -> None:
    # The engine renews a running activity's lock once a second; a shorter lease would let
    # another dispatcher start the activity again while it runs.
    with pytest.raises(pdn.PayloadError, match="at least 2 seconds.*starts it again"):
        pdn.WorkflowRuntime(db=":memory:", registry=registry, lock_timeout=timedelta(seconds=1))


def test_one_engine_per_store_per_process(registry, make_runtime, iid, db_path) -> None:
    @registry.register_workflow("shared")
    def shared(ctx, x):
        ctx.set_custom_status("waiting")
        yield ctx.wait_for_event("go")
        return x

    first = make_runtime().start()
    instance = first.start_workflow("shared", 5, instance_id=iid())
    wait_until(lambda: first.get_workflow(instance).custom_status == "waiting")
    second = make_runtime(db=db_path)
    with pytest.raises(pdn.RuntimeStateError, match="already open in this process.*shutdown"):
        second.start()
    with pytest.raises(pdn.RuntimeStateError, match="already open in this process"):
        second.get_workflow(instance)
    first.shutdown()
    # Released at shutdown although `first` is still referenced: the next runtime opens the file.
    second.start().signal_workflow(instance, "go")
    assert second.wait_for_workflow(instance, timeout=30).output == 5


def test_many_edits_after_start_all_run(registry, rt, iid) -> None:
    # duroxide needs each name's versions in ascending order; code hashes arrive in any order.
    instances = []
    for n in range(6):
        registry.register_workflow(
            "edited", _cell(f"def review(ctx, x):\n    yield ctx.schedule_timer(1)\n    return {n}\n")
        )
        instances.append(rt.start_workflow("edited", None, instance_id=iid()))
    assert [rt.wait_for_workflow(i, timeout=30).output for i in instances] == list(range(6))
    assert len(registry.versions("edited")) == 6


def test_async_twins_keep_the_event_loop_free(registry, rt, iid) -> None:
    import asyncio

    @registry.register_workflow("twins")
    def twins(ctx, x):
        yield ctx.schedule_timer(1)
        return x

    instance = rt.start_workflow("twins", 7, instance_id=iid())

    async def main():
        state = await rt.wait_for_workflow_async(instance, timeout=30)
        again = await rt.get_workflow_async(instance)
        listed = await rt.list_workflows_async(name="twins")
        events = await rt.history_async(instance)
        return state.output, again.output, [s.instance_id for s in listed], events[-1].output

    assert asyncio.run(main()) == (7, 7, [instance], 7)


def test_write_ahead_log_stays_bounded(registry, make_runtime, iid, db_path) -> None:
    @registry.register_activity("step")
    def step(_ctx, i):
        return i

    @registry.register_workflow("long")
    def long(ctx, n):
        for i in range(n):
            yield ctx.schedule_activity("step", i)
        return n

    wal = Path(str(db_path) + "-wal")
    rt = make_runtime(wal_limit_bytes=256 * 1024).start()
    # Unchecked, 150 steps leave about 6 MB of log (40 kB a step).
    assert rt.wait_for_workflow(rt.start_workflow("long", 150, instance_id=iid()), timeout=60).output == 150
    assert wal.stat().st_size < 3 * 1024 * 1024
    rt.shutdown()
    assert not wal.exists() or wal.stat().st_size == 0
