from __future__ import annotations

import json

import pytest

import pi_duroxide_nb as pdn
from tests.conftest import wait_until


@pytest.fixture
def tools_rt(registry, make_runtime):
    @registry.register_workflow("approve", description="Wait for approval")
    def approve(ctx, input):
        ctx.set_custom_status("awaiting-approval")
        decision = yield ctx.wait_for_event("decision")
        return {"service": input["service"], "decision": decision}

    @registry.register_workflow("echo")
    def echo(ctx, input):
        yield ctx.schedule_timer(1)
        return input

    rt = make_runtime().start()
    return rt, {t.name: t for t in pdn.workflow_tools(rt)}


def payload(result: pdn.ToolResult):
    assert result.content[0].type == "text"
    return json.loads(result.content[0].text)


def test_five_tools_with_schemas(tools_rt) -> None:
    _, tools = tools_rt
    assert sorted(tools) == ["get-workflow", "list-workflows", "signal-workflow", "start-workflow", "wait-for-workflow"]
    start = tools["start-workflow"].parameters
    assert start["required"] == ["name", "input"] and "id" in start["properties"]
    assert "approve" in tools["start-workflow"].description
    wait = tools["wait-for-workflow"].parameters
    assert wait["properties"]["timeoutMs"]["default"] == 60000
    status = tools["list-workflows"].parameters["properties"]["status"]
    assert "Terminated" in json.dumps(status)


def test_signal_wakes_wait_for_event_and_wait_returns_state(tools_rt, iid) -> None:
    rt, tools = tools_rt
    started = tools["start-workflow"].execute({"name": "approve", "input": {"service": "api"}, "id": iid()})
    assert not started.is_error
    instance = payload(started)["instanceId"]
    wait_until(
        lambda: payload(tools["get-workflow"].execute({"instanceId": instance}))["customStatus"] == "awaiting-approval"
    )
    signalled = tools["signal-workflow"].execute(
        {"instanceId": instance, "eventName": "decision", "data": {"action": "approve"}}
    )
    assert payload(signalled) == {"signalled": True}
    done = payload(tools["wait-for-workflow"].execute({"instanceId": instance, "timeoutMs": 30000}))
    assert done["status"] == "Completed"
    assert done["output"] == {"service": "api", "decision": {"action": "approve"}}
    shape = tools["get-workflow"].execute({"instanceId": instance}).to_pi()
    assert set(shape) == {"content", "details", "isError"} and shape["content"][0]["type"] == "text"
    assert shape["details"]["customStatus"] == "awaiting-approval"


def test_list_honours_filters_and_returns_states(tools_rt, iid) -> None:
    rt, tools = tools_rt
    a = rt.start_workflow("echo", 1, instance_id=iid())
    b = rt.start_workflow("approve", {"service": "x"}, instance_id=iid())
    rt.wait_for_workflow(a, timeout=30)
    wait_until(lambda: rt.get_workflow(b).status is pdn.WorkflowStatus.RUNNING)
    listed = payload(tools["list-workflows"].execute({"name": "echo"}))
    assert [s["instanceId"] for s in listed] == [a] and listed[0]["output"] == 1
    running = payload(tools["list-workflows"].execute({"status": "Running"}))
    assert [s["instanceId"] for s in running] == [b] and running[0]["name"] == "approve"
    assert len(payload(tools["list-workflows"].execute({}))) == 2


def test_unknown_ids_and_bad_arguments_are_tool_errors(tools_rt, iid) -> None:
    _, tools = tools_rt
    missing = iid("missing")
    assert payload(tools["get-workflow"].execute({"instanceId": missing})) == {
        "instanceId": missing,
        "status": "not_found",
    }
    bad = tools["start-workflow"].execute({"name": "nope", "input": {}})
    assert bad.is_error and "'nope' is not registered" in bad.content[0].text and "'approve'" in bad.content[0].text
    for tool, args in [
        ("start-workflow", {"input": {}}),
        ("signal-workflow", {"instanceId": 3}),
        ("list-workflows", {"status": "Finished"}),
        ("wait-for-workflow", {"instanceId": "x", "timeoutMs": -1}),
        ("get-workflow", "not json"),
    ]:
        result = tools[tool].execute(args)
        assert result.is_error, (tool, args)
        assert "Invalid arguments" in result.content[0].text
    signal = tools["signal-workflow"].execute({"instanceId": missing, "eventName": "e", "data": 1})
    assert signal.is_error and missing in signal.content[0].text


def test_wait_reports_timeout_with_current_state(tools_rt, iid) -> None:
    rt, tools = tools_rt
    instance = rt.start_workflow("approve", {"service": "api"}, instance_id=iid())
    result = payload(tools["wait-for-workflow"].execute({"instanceId": instance, "timeoutMs": 200}))
    assert result["timedOut"] is True and result["status"] in ("Running", "Pending")


def test_tools_carry_the_kv_store_bounded_and_say_when_truncated(registry, tools_rt, iid) -> None:
    rt, tools = tools_rt

    @registry.register_workflow("progress")
    def progress(ctx, big):
        ctx.kv.set("step", 3)
        ctx.kv.set("done", ["build", "test"])
        if big:
            ctx.kv.set("log", "x" * 5000)  # too big for any tool result
            for i in range(60):
                ctx.kv.set(f"z{i:02}", "y" * 20)
        yield ctx.schedule_timer(1)
        return "ok"

    small = rt.start_workflow("progress", False, instance_id=iid())
    done = payload(tools["wait-for-workflow"].execute({"instanceId": small, "timeoutMs": 30000}))
    assert done["kv"] == {"done": ["build", "test"], "step": 3} and "kvTruncated" not in done
    assert payload(tools["get-workflow"].execute({"instanceId": small}))["kv"] == done["kv"]

    big = rt.start_workflow("progress", True, instance_id=iid())
    rt.wait_for_workflow(big, timeout=30)
    got = payload(tools["get-workflow"].execute({"instanceId": big}))
    assert len(json.dumps(got["kv"])) <= 4000
    assert got["kv"]["step"] == 3 and "log" not in got["kv"]  # what fits is kept, in key order
    truncated = got["kvTruncated"]
    assert truncated["totalKeys"] == 63 and truncated["shownKeys"] == len(got["kv"])
    assert truncated["omittedKeys"][0] == "log" and truncated["limitChars"] == 4000
    assert "left out to keep this result under 4000 characters" in truncated["note"]
    listed = {s["instanceId"]: s for s in payload(tools["list-workflows"].execute({"name": "progress"}))}
    assert listed[small]["kv"] == done["kv"]  # listed instances carry theirs too, under a smaller bound
    assert len(json.dumps(listed[big]["kv"])) <= 1000 and listed[big]["kvTruncated"]["limitChars"] == 1000
    assert listed[big]["kvTruncated"]["shownKeys"] < truncated["shownKeys"]


def test_typed_wait_through_the_tools(registry, make_runtime, iid) -> None:
    from pydantic import BaseModel, Field

    class Approval(BaseModel):
        approved: bool = Field(description="Ship it?")

    @registry.register_workflow("gate")
    def gate(ctx, input):
        decision = yield ctx.wait_for_event("approval", model=Approval)
        return decision.approved

    rt = make_runtime().start()
    tools = {t.name: t for t in pdn.workflow_tools(rt)}
    instance = rt.start_workflow("gate", instance_id=iid())
    got = wait_until(
        lambda: (p := payload(tools["get-workflow"].execute({"instanceId": instance})))["waitingFor"] and p
    )
    [waiting] = got["waitingFor"]

    def signal(data: object) -> pdn.ToolResult:
        return tools["signal-workflow"].execute({"instanceId": instance, "eventName": "approval", "data": data})

    assert waiting["eventName"] == "approval"
    assert waiting["schema"]["properties"]["approved"] == {
        "description": "Ship it?",
        "title": "Approved",
        "type": "boolean",
    }
    bad = signal({"approved": []})
    assert bad.is_error
    text = bad.content[0].text
    assert "approved: Input should be a valid boolean" in text
    assert "The data must fit this JSON Schema:" in text and '"Ship it?"' in text
    assert payload(tools["get-workflow"].execute({"instanceId": instance}))["waitingFor"] == got["waitingFor"]
    good = tools["signal-workflow"].execute(
        {"instanceId": instance, "eventName": "approval", "data": {"approved": True}}
    )
    assert payload(good) == {"signalled": True}
    assert rt.wait_for_workflow(instance, timeout=10).output is True
    done = payload(tools["get-workflow"].execute({"instanceId": instance}))
    assert done["waitingFor"] == []
    late = tools["signal-workflow"].execute(
        {"instanceId": instance, "eventName": "approval", "data": {"approved": True}}
    )
    assert late.is_error and "has finished as Completed" in late.content[0].text
