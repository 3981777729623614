"""pdn.Agent: a model drives workflows (start, inspect, signal, wait) through the five workflow tools."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import pi_duroxide_nb as pdn
from tests.conftest import wait_until

WORKFLOW_TOOLS = ["start-workflow", "get-workflow", "list-workflows", "signal-workflow", "wait-for-workflow"]


def _deploy(registry: pdn.WorkflowRegistry) -> None:
    @registry.register_workflow("deploy", description="Deploy a service after approval")
    def deploy(ctx, input):
        ctx.set_custom_status("awaiting-approval")
        decision = yield ctx.wait_for_event("deploy-decision")
        if decision.get("action") != "approve":
            return {"status": "rejected"}
        return {"status": "deployed", "service": input["service"]}


def test_agent_starts_a_workflow_then_approves_it(registry, make_runtime, iid) -> None:
    _deploy(registry)
    rt = make_runtime().start()
    instance = iid("abc")

    def report(call: pdn.ModelCall) -> str:
        state = json.loads(call.last_text)
        return f"The deploy is {state['status']}: {state['output']['status']}."

    model = pdn.ScriptedModel(
        [
            pdn.ToolCall("start-workflow", {"name": "deploy", "input": {"service": "api"}, "id": instance}),
            f"Started deploy {instance}.",
            pdn.ToolCall("get-workflow", {"instanceId": instance}),
            pdn.ToolCall(
                "signal-workflow",
                {"instanceId": instance, "eventName": "deploy-decision", "data": {"action": "approve"}},
            ),
            pdn.ToolCall("wait-for-workflow", {"instanceId": instance, "timeoutMs": 30000}),
            report,
        ]
    )
    agent = pdn.Agent(rt, model=model)
    assert agent.tools == WORKFLOW_TOOLS

    assert agent.chat("start a deploy of api") == f"Started deploy {instance}."
    wait_until(lambda: rt.get_workflow(instance).custom_status == "awaiting-approval")

    answer = agent.chat(f"approve the deploy for instance {instance}")
    assert answer == "The deploy is Completed: deployed."
    state = rt.get_workflow(instance)
    assert state.status is pdn.WorkflowStatus.COMPLETED
    assert state.output == {"status": "deployed", "service": "api"}

    calls = model.calls
    assert len(calls) == 6
    assert calls[0].tool_names == WORKFLOW_TOOLS
    assert "Registered workflows: deploy" in calls[0].tools[0].description
    assert calls[0].options.system_prompt and "signal-workflow" in calls[0].options.system_prompt
    assert json.loads(calls[1].last_text) == {"instanceId": instance}
    seen = json.loads(calls[3].last_text)  # what get-workflow told the model
    assert seen["status"] == "Running" and seen["customStatus"] == "awaiting-approval"
    assert json.loads(calls[4].last_text) == {"signalled": True}
    # The second chat carries the first exchange: the conversation is kept.
    assert [m.role for m in calls[2].messages] == ["user", "assistant", "toolResult", "assistant", "user"]
    assert len(agent.messages) == 2 + 2 + 2 * 3 + 1 + 1
    agent.reset()
    assert agent.messages == []


def test_agent_tool_errors_go_back_to_the_model(registry, make_runtime) -> None:
    _deploy(registry)
    rt = make_runtime().start()
    model = pdn.ScriptedModel(
        [
            pdn.ToolCall("signal-workflow", {"instanceId": "ghost", "eventName": "deploy-decision", "data": {}}),
            pdn.ToolCall("start-workflow", {"name": "nope", "input": {}}),
            pdn.ToolCall("get-workflow", {"id": "x"}),
            pdn.ToolCall("rm", {}),
            "Nothing worked.",
        ]
    )
    agent = pdn.Agent(rt, model=model)
    assert agent.chat("do things") == "Nothing worked."
    results = [m for m in agent.messages if isinstance(m, pdn.ToolResultMessage)]
    assert all(r.is_error for r in results)
    assert "No workflow instance 'ghost'" in results[0].text
    assert "Workflow 'nope' is not registered. Registered workflows: 'deploy'" in results[1].text
    assert "Invalid arguments for get-workflow" in results[2].text
    assert "not available in this turn" in results[3].text


def test_agent_with_pi_tools_and_a_policy(registry, make_runtime, tmp_path: Path) -> None:
    _deploy(registry)
    (tmp_path / "runbook.md").write_text("Approve deploys on Fridays only.", encoding="utf-8")
    rt = make_runtime().start()
    asked: list[str] = []

    def approve(name: str, args: dict) -> bool:
        asked.append(name)
        return name != "signal-workflow"

    model = pdn.ScriptedModel(
        [
            pdn.ToolCall("read", {"path": "runbook.md"}),
            pdn.ToolCall("signal-workflow", {"instanceId": "x", "eventName": "e", "data": {}}),
            "Refused.",
        ]
    )
    agent = pdn.Agent(
        rt, model=model, tools=["read", "ls"], cwd=tmp_path, policy=pdn.ToolPolicy(approve=approve), max_steps=5
    )
    assert agent.tools == [*WORKFLOW_TOOLS, "read", "ls"]
    assert agent.chat("check the runbook", temperature=0) == "Refused."
    assert model.calls[1].last_text == "Approve deploys on Fridays only."
    assert "was not approved" in model.calls[2].last_text
    assert asked == ["read", "signal-workflow"]
    assert model.calls[0].options.temperature == 0
    with pytest.raises(pdn.PayloadError, match="invalid options"):
        agent.chat("x", tempreture=1)


def test_bad_agent_configuration_is_reported_at_once(make_runtime) -> None:
    rt = make_runtime()
    with pytest.raises(TypeError, match=r"Agent\(model=...\) takes a pdn.ChatModel"):
        pdn.Agent(rt, model="gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Agent\(tools=...\) takes a list of tool names"):
        pdn.Agent(rt, model=pdn.ScriptedModel([]), tools="read")
    with pytest.raises(ValueError, match=r"Agent\(max_steps=...\) must be a positive integer"):
        pdn.Agent(rt, model=pdn.ScriptedModel([]), max_steps=0)
    with pytest.raises(pdn.ToolError, match="not one of pi's built-in tools"):
        pdn.Agent(rt, model=pdn.ScriptedModel([]), tools=["rm"])


def test_chats_from_two_threads_take_turns(make_runtime) -> None:
    first_in, release = threading.Event(), threading.Event()

    def reply(call: pdn.ModelCall) -> str:
        if call.last_text == "one":
            first_in.set()
            assert release.wait(10)
        return f"re: {call.last_text}"

    model = pdn.ScriptedModel(reply)
    agent = pdn.Agent(make_runtime(), model=model)
    one = threading.Thread(target=agent.chat, args=("one",))
    one.start()
    assert first_in.wait(10)
    two = threading.Thread(target=agent.chat, args=("two",))
    two.start()
    release.set()
    one.join(10)
    two.join(10)
    assert [c.last_text for c in model.calls] == ["one", "two"]
    assert [m.role for m in model.calls[1].messages] == ["user", "assistant", "user"]  # it saw the first turn
    assert [m.text for m in agent.messages] == ["one", "re: one", "two", "re: two"]
