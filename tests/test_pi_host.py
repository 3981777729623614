"""PiHost behind ctx.pi in real workflows, with the ScriptedModel: llm, prompt, tool, skill, send_message."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

import pi_duroxide_nb as pdn

DONE = pdn.WorkflowStatus.COMPLETED


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "notes.md").write_text("Remember the milk.\n", encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # skills under ~ come from here
    return root


def run(rt: pdn.WorkflowRuntime, name: str, input, iid) -> pdn.WorkflowState:
    state = rt.wait_for_workflow(rt.start_workflow(name, input, instance_id=iid()), timeout=30)
    assert state.status is DONE, state.error
    return state


def test_the_issue_example_llm_then_a_full_turn_with_a_tool(registry, make_runtime, iid, work) -> None:
    host = pdn.PiHost(
        model=pdn.ScriptedModel(["Hello!", pdn.ToolCall("read", {"path": "notes.md"}), "Done reading."]),
        cwd=work,
        tools=["read", "bash", "edit", "write", "ls", "grep", "find"],
    )

    @registry.register_workflow("assistant")
    def assistant(ctx, _):
        hello = yield ctx.pi.llm([{"role": "user", "content": "Say hello"}])
        turn = yield ctx.pi.prompt("What do my notes say?")
        yield ctx.pi.send_message(f"{hello['content'][0]['text']} / {turn['text']}")
        return {"hello": hello, "turn": turn}

    rt = make_runtime(host=host).start()
    state = run(rt, "assistant", None, iid)
    out = state.output

    assert out["hello"]["role"] == "assistant"
    assert out["hello"]["content"] == [{"type": "text", "text": "Hello!"}]
    assert out["hello"]["stopReason"] == "stop" and out["hello"]["provider"] == "scripted"
    assert out["turn"]["text"] == "Done reading."
    roles = [m["role"] for m in out["turn"]["messages"]]
    assert roles == ["user", "assistant", "toolResult", "assistant"]
    tool_result = out["turn"]["messages"][2]
    assert tool_result["toolName"] == "read" and tool_result["toolCallId"] == "call_1"
    assert tool_result["content"] == [{"type": "text", "text": "Remember the milk."}]
    assert tool_result["isError"] is False

    calls = host.model.calls
    assert len(calls) == 3  # replays of the workflow never called the model again
    assert calls[0].tool_names == []  # ctx.pi.llm offers no tools unless asked
    assert calls[0].messages[0].text == "Say hello"
    assert calls[1].tool_names == ["read", "bash", "edit", "write", "ls", "grep", "find"]
    assert calls[1].messages[0].text == "What do my notes say?"
    assert calls[2].last_text == "Remember the milk."
    assert isinstance(calls[2].messages[-1], pdn.ToolResultMessage)

    # The turn's messages are pi messages the models can read back.
    restored = [pdn.AssistantMessage.model_validate(m) for m in out["turn"]["messages"] if m["role"] == "assistant"]
    assert restored[0].tool_calls == [pdn.ToolCall("read", {"path": "notes.md"}, id="call_1")]
    logged = rt.messages(state.instance_id)  # the turn's tool call, then the message
    assert [e.custom_type for e in logged] == ["workflow_tool_call", "workflow_message"]
    assert logged[0].details == {
        "name": "read",
        "args": {"path": "notes.md"},
        "result": {
            "content": [{"type": "text", "text": "Remember the milk."}],
            "details": logged[0].details["result"]["details"],
        },
    }
    assert logged[1].content == "Hello! / Done reading."


class Forecast(BaseModel):
    city: str = Field(description="City name")
    days: int = Field(default=1, ge=1, le=7)


def test_set_host_with_cwd_dot_and_a_user_tool_inside_a_workflow(
    registry, make_runtime, iid, work, monkeypatch
) -> None:
    monkeypatch.chdir(work)
    host = pdn.PiHost(
        model=pdn.ScriptedModel([pdn.ToolCall("forecast", {"city": "Oslo"}), "Clear in Oslo."]),
        cwd=".",
        tools=["read", "bash", "edit", "write", "ls", "grep", "find"],
    )
    assert host.cwd == work.resolve()

    @host.register_tool
    def forecast(args: Forecast) -> dict:
        """The forecast for a city."""
        return {"city": args.city, "days": args.days, "sky": "clear"}

    @registry.register_workflow("weather")
    def weather(ctx, _):
        errors = []
        for args in [{"town": "Oslo"}, {"city": "Oslo", "days": 9}]:
            try:
                yield ctx.pi.tool("forecast", args)
            except pdn.ActivityError as err:
                errors.append([err.error_type, err.error_message])
        direct = yield ctx.pi.tool("forecast", {"city": "Bergen", "days": 2})
        notes = yield ctx.pi.tool("read", {"path": "notes.md"})  # relative to cwd="."
        turn = yield ctx.pi.prompt("Weather in Oslo?")
        return {"errors": errors, "direct": direct["details"], "notes": notes["content"][0]["text"], "turn": turn}

    rt = make_runtime()
    rt.set_host(host)  # the other way to bind a host
    assert rt.host is host
    rt.start()
    out = run(rt, "weather", None, iid).output
    assert [e[0] for e in out["errors"]] == ["ToolError", "ToolError"]
    assert "Tool 'forecast' got invalid arguments: city: Field required" in out["errors"][0][1]
    assert "days: Input should be less than or equal to 7" in out["errors"][1][1]
    assert out["direct"] == {"city": "Bergen", "days": 2, "sky": "clear"}
    assert out["notes"] == "Remember the milk."
    assert out["turn"]["text"] == "Clear in Oslo."
    assert out["turn"]["messages"][2]["details"] == {"city": "Oslo", "days": 1, "sky": "clear"}
    offered = host.model.calls[0].tools[-1]
    assert offered.name == "forecast" and offered.description == "The forecast for a city."
    assert offered.parameters["properties"]["city"] == {"description": "City name", "title": "City", "type": "string"}
    assert offered.parameters["required"] == ["city"]


def test_options_are_per_call_and_bad_options_are_catchable(registry, make_runtime, iid, work) -> None:
    host = pdn.PiHost(model=pdn.ScriptedModel(["a", "b"]), cwd=work, system_prompt="Host default")

    @registry.register_workflow("opts")
    def opts(ctx, _):
        first = yield ctx.pi.llm(
            [{"role": "user", "content": "hi"}], model="other-model", temperature=0.2, max_tokens=50
        )
        second = yield ctx.pi.llm(
            [{"role": "system", "content": "From messages"}, {"role": "user", "content": "hi"}], system_prompt="Call"
        )
        try:
            yield ctx.pi.llm([{"role": "user", "content": "hi"}], temprature=1)
        except pdn.ActivityError as err:
            return {"first": first["model"], "second": second["model"], "error": err.error_message}

    rt = make_runtime(host=host).start()
    out = run(rt, "opts", None, iid).output
    assert out["first"] == "other-model" and out["second"] == "scripted"
    assert "invalid options: temprature: Extra inputs are not permitted" in out["error"]
    first, second = host.model.calls
    assert first.options.model == "other-model" and first.options.temperature == 0.2
    assert first.options.max_tokens == 50 and first.options.system_prompt == "Host default"
    assert second.options.system_prompt == "Call"


def test_system_messages_become_the_system_prompt(registry, make_runtime, iid, work) -> None:
    host = pdn.PiHost(model=pdn.ScriptedModel(["ok"]), cwd=work)

    @registry.register_workflow("sys")
    def sys_(ctx, _):
        return (yield ctx.pi.llm([{"role": "system", "content": "Be terse"}, {"role": "user", "content": "hi"}]))

    rt = make_runtime(host=host).start()
    run(rt, "sys", None, iid)
    (call,) = host.model.calls
    assert call.options.system_prompt == "Be terse"
    assert [m.role for m in call.messages] == ["user"]


def test_tool_errors_are_catchable_in_the_workflow(registry, make_runtime, iid, work) -> None:
    host = pdn.PiHost(model=pdn.ScriptedModel([]), cwd=work, tools=["read", "bash"])

    @registry.register_workflow("tools")
    def tools(ctx, _):
        errors = []
        for name, args in [("nope", {}), ("read", {"file": "x"}), ("read", {"path": "missing.md"})]:
            try:
                yield ctx.pi.tool(name, args)
            except pdn.ActivityError as err:
                errors.append([err.error_type, err.error_message])
        build = yield ctx.pi.tool("bash", {"command": "exit 2"})
        return {"errors": errors, "exitCode": build["exitCode"]}

    rt = make_runtime(host=host).start()
    state = run(rt, "tools", None, iid)
    errors = state.output["errors"]
    assert [e[0] for e in errors] == ["ToolError", "ToolError", "ToolError"]
    assert "Unknown tool 'nope'. This host's tools are: read, bash" in errors[0][1]
    assert "invalid arguments: path: Field required" in errors[1][1]
    assert "missing.md is not found" in errors[2][1]
    assert state.output["exitCode"] == 2
    logged = rt.messages(state.instance_id)
    assert [e.details["name"] for e in logged] == ["nope", "read", "read", "bash"]
    assert "error" in logged[0].details and logged[3].details["result"]["exitCode"] == 2


def test_llm_can_offer_tools_and_the_workflow_runs_them_durably(registry, make_runtime, iid, work) -> None:
    host = pdn.PiHost(
        model=pdn.ScriptedModel([pdn.ToolCall("ls", {}), "There is one file."]),
        cwd=work,
    )

    @registry.register_workflow("manual-loop")
    def manual_loop(ctx, _):
        messages = [{"role": "user", "content": "What is here?"}]
        while True:
            reply = yield ctx.pi.llm(messages, tools=["ls", "read"])
            messages.append(reply)
            calls = [b for b in reply["content"] if b["type"] == "toolCall"]
            if not calls:
                return reply["content"][0]["text"]
            for call in calls:
                result = yield ctx.pi.tool(call["name"], call["arguments"])
                messages.append({"role": "toolResult", "toolCallId": call["id"], "toolName": call["name"], **result})

    rt = make_runtime(host=host).start()
    assert run(rt, "manual-loop", None, iid).output == "There is one file."
    first, second = host.model.calls
    assert first.tool_names == ["read", "ls"]
    assert second.last_text == "notes.md"


def test_prompt_turn_sends_tool_failures_back_to_the_model(registry, make_runtime, iid, work) -> None:
    policy = pdn.ToolPolicy(allow=["read"])
    host = pdn.PiHost(
        model=pdn.ScriptedModel(
            [pdn.ToolCall("bash", {"command": "rm -rf /"}), pdn.ToolCall("read", {}), "I could not do it."]
        ),
        cwd=work,
        policy=policy,
    )

    @registry.register_workflow("turn")
    def turn(ctx, _):
        return (yield ctx.pi.prompt("Clean up"))

    rt = make_runtime(host=host).start()
    out = run(rt, "turn", None, iid).output
    assert out["text"] == "I could not do it."
    results = [m for m in out["messages"] if m["role"] == "toolResult"]
    assert [r["isError"] for r in results] == [True, True]
    assert "not available in this turn. Available tools: read" in results[0]["content"][0]["text"]
    assert "invalid arguments: path: Field required" in results[1]["content"][0]["text"]
    assert host.model.calls[0].tool_names == ["read"]
    logged = rt.messages()
    assert [(e.details["name"], "error" in e.details) for e in logged] == [("read", True)]


def test_model_failures_are_catchable(registry, make_runtime, iid, work) -> None:
    host = pdn.PiHost(model=pdn.ScriptedModel(["only one"]), cwd=work)

    @registry.register_workflow("greedy")
    def greedy(ctx, _):
        first = yield ctx.pi.llm([{"role": "user", "content": "one"}])
        try:
            yield ctx.pi.llm([{"role": "user", "content": "two"}])
        except pdn.ActivityError as err:
            return [first["content"][0]["text"], err.error_type, err.error_message]

    rt = make_runtime(host=host).start()
    text, kind, message = run(rt, "greedy", None, iid).output
    assert text == "only one" and kind == "ModelError"
    assert "ScriptedModel has no reply left for call 2" in message and "'two'" in message


def test_prompt_stops_a_model_that_never_stops_calling_tools(work) -> None:
    host = pdn.PiHost(model=pdn.ScriptedModel(lambda call: pdn.ToolCall("ls", {})), cwd=work, max_steps=3)
    with pytest.raises(pdn.ModelError, match="still called tools after 3 replies"):
        host.prompt("loop forever", {})
    assert len(host.model.calls) == 3


# --- skills ----------------------------------------------------------------------------------------


def _skill(base: Path, name: str, text: str, filename: str = "SKILL.md") -> None:
    folder = base / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(text, encoding="utf-8")


def test_skills_are_found_where_pi_looks_and_sent_wrapped(registry, make_runtime, iid, work) -> None:
    home = Path.home()
    _skill(home / ".pi" / "agent" / "skills", "greet", "Greet warmly.", filename="greet.md")
    _skill(home / ".agents" / "skills", "shared", "---\nname: shared\ndescription: From agents\n---\nUser copy.\n")
    review = "---\nname: review\ndescription: Review a diff\n---\n\nCheck the tests.\n"
    _skill(work / ".pi" / "skills", "review", review)
    _skill(work / ".agents" / "skills", "shared-dir", "---\nname: shared\ndescription: Project copy\n---\nProject.\n")

    model = pdn.ScriptedModel(["LGTM", "Hi there!"])
    host = pdn.PiHost(model=model, cwd=work)
    skills = host.skills()
    assert sorted(skills) == ["greet", "review", "shared"]
    assert skills["review"].description == "Review a diff" and skills["review"].body == "Check the tests."
    assert skills["shared"].body == "Project." and skills["shared"].description == "Project copy"  # project wins

    @registry.register_workflow("skills")
    def use_skills(ctx, _):
        review = yield ctx.pi.skill("review", "the diff")
        greet = yield ctx.pi.skill("greet", {"name": "Ada"})
        try:
            yield ctx.pi.skill("deploy", "now")
        except pdn.ActivityError as err:
            return {"review": review, "greet": greet, "missing": [err.error_type, err.error_message]}

    rt = make_runtime(host=host).start()
    out = run(rt, "skills", None, iid).output
    assert out["review"] == "LGTM" and out["greet"] == "Hi there!"
    assert model.calls[0].messages[0].text == '<skill name="review">\nCheck the tests.\n</skill>\n\nthe diff'
    assert model.calls[1].messages[0].text == '<skill name="greet">\nGreet warmly.\n</skill>\n\n{"name": "Ada"}'
    kind, message = out["missing"]
    assert kind == "SkillNotFoundError"
    assert "Skill 'deploy' not found" in message
    for place in (home / ".pi/agent/skills", home / ".agents/skills", work / ".pi/skills", work / ".agents/skills"):
        assert str(place) in message
    assert "Skills found: greet, review, shared" in message


def test_skill_paths_replace_the_search(work, tmp_path) -> None:
    _skill(tmp_path / "mine", "tidy", "Tidy up.")
    host = pdn.PiHost(model=pdn.ScriptedModel(["tidied"]), cwd=work, skill_paths=[tmp_path / "mine"])
    assert host.skill("tidy", None) == "tidied"
    assert host.model.calls[0].messages[0].text == '<skill name="tidy">\nTidy up.\n</skill>'
    with pytest.raises(pdn.SkillNotFoundError) as info:
        host.skill("nope", None)
    assert info.value.searched == (str(tmp_path / "mine"),) and info.value.found == ("tidy",)
