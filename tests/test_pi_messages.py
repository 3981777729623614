"""LLM message models (pi's shapes) and the ScriptedModel test seam."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import pi_duroxide_nb as pdn


def test_messages_round_trip_in_pis_json_shape() -> None:
    reply = pdn.AssistantMessage(
        content=[pdn.TextContent(text="Reading."), pdn.ToolCall("read", {"path": "a.md"}, id="c1")],
        provider="openai",
        model="gpt",
        usage=pdn.Usage(input=3, output=2, total_tokens=5),
        stop_reason="toolUse",
    )
    data = reply.to_pi()
    assert data == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Reading."},
            {"type": "toolCall", "id": "c1", "name": "read", "arguments": {"path": "a.md"}},
        ],
        "provider": "openai",
        "model": "gpt",
        "usage": {"input": 3, "output": 2, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 5},
        "stopReason": "toolUse",
        "errorMessage": None,
    }
    again = pdn.AssistantMessage.model_validate(data)
    assert again == reply and again.text == "Reading." and again.tool_calls[0].name == "read"
    result = pdn.ToolResultMessage.model_validate(
        {"role": "toolResult", "toolCallId": "c1", "toolName": "read", "content": [{"type": "text", "text": "x"}]}
    )
    assert result.tool_call_id == "c1" and result.text == "x" and result.is_error is False
    with pytest.raises(ValidationError):
        pdn.AssistantMessage.model_validate({**data, "stopReason": "bored"})


def test_scripted_model_plays_replies_in_order_and_records_calls() -> None:
    model = pdn.ScriptedModel(
        [
            "Hello!",
            pdn.ToolCall("read", {"path": "notes.md"}),
            ["Two things:", pdn.ToolCall("ls"), pdn.ToolCall("find", {"pattern": "*.py"})],
            lambda call: f"You said {call.last_text!r}",
            {"content": [{"type": "text", "text": "as a dict"}], "stopReason": "length"},
        ]
    )
    ask = [pdn.UserMessage(content="hi")]
    spec = pdn.ToolSpec(name="read", description="Read", parameters={"type": "object"})
    first = model.complete(ask, tools=[spec], options=pdn.LlmOptions(temperature=0.5))
    assert first.text == "Hello!" and first.stop_reason == "stop" and first.provider == "scripted"
    second = model.complete(ask)
    assert second.tool_calls == [pdn.ToolCall("read", {"path": "notes.md"}, id="call_1")]
    assert second.stop_reason == "toolUse"
    third = model.complete(ask)
    assert third.text == "Two things:" and [c.id for c in third.tool_calls] == ["call_2", "call_3"]
    assert model.complete([pdn.UserMessage(content="echo")]).text == "You said 'echo'"
    fifth = model.complete(ask, options=pdn.LlmOptions(model="other"))
    assert fifth.text == "as a dict" and fifth.stop_reason == "length" and fifth.model == "other"
    assert model.remaining == 0

    calls = model.calls
    assert len(calls) == 5
    assert calls[0].tool_names == ["read"] and calls[0].options.temperature == 0.5
    assert calls[3].messages == [pdn.UserMessage(content="echo")]

    with pytest.raises(pdn.ModelError, match="no reply left for call 6") as info:
        model.complete(ask)
    assert info.value.provider == "scripted"
    model.add("more")
    assert model.complete(ask).text == "more"


def test_scripted_model_rejects_unplayable_replies() -> None:
    model = pdn.ScriptedModel([[42]])  # type: ignore[list-item]
    with pytest.raises(pdn.ModelError, match="cannot play 42"):
        model.complete([pdn.UserMessage(content="x")])


def test_bad_messages_to_llm_are_clear_errors(tmp_path) -> None:
    host = pdn.PiHost(model=pdn.ScriptedModel(["x"]), cwd=tmp_path)
    with pytest.raises(pdn.PayloadError, match="message 0 is 'hi'"):
        host.llm(["hi"], {})  # type: ignore[list-item]
    with pytest.raises(pdn.PayloadError, match="do not match pi's message shapes"):
        host.llm([{"role": "robot", "content": "x"}], {})
    with pytest.raises(pdn.ToolError, match="names tools this host does not allow"):
        host.llm([{"role": "user", "content": "x"}], {"tools": ["teleport"]})
    assert host.model.calls == []


def test_a_bash_result_spread_into_a_tool_result_message_is_accepted(tmp_path) -> None:
    host = pdn.PiHost(model=pdn.ScriptedModel(["seen"]), cwd=tmp_path)
    result = host.tool("bash", {"command": "echo hi; exit 1"})
    reply = host.llm(
        [
            {"role": "user", "content": "run it"},
            {"role": "assistant", "content": [{"type": "toolCall", "id": "c1", "name": "bash", "arguments": {}}]},
            {"role": "toolResult", "toolCallId": "c1", "toolName": "bash", **result},
        ],
        {},
    )
    assert reply["content"][0]["text"] == "seen"
    sent = host.model.calls[0].messages[-1]
    assert isinstance(sent, pdn.ToolResultMessage) and sent.is_error is True
    assert sent.text == "hi\n\nCommand exited with code 1"
