"""OpenAIModel and AnthropicModel end to end: the real SDKs against local servers speaking each wire format."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

import pi_duroxide_nb as pdn
from tests.fake_llm_servers import (
    anthropic_error,
    anthropic_reply,
    fake_server,
    openai_error,
    openai_reply,
)

DONE = pdn.WorkflowStatus.COMPLETED


@pytest.fixture
def work(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "notes.md").write_text("Remember the milk.\n", encoding="utf-8")
    return root


def _register(registry: pdn.WorkflowRegistry) -> None:
    @registry.register_workflow("ask")
    def ask(ctx, question):
        try:
            turn = yield ctx.pi.prompt(question, temperature=0.1)
        except pdn.ActivityError as err:
            return {"error_type": err.error_type, "error": err.error_message}
        return turn


def test_openai_turn_with_a_tool_call(registry, make_runtime, iid, work) -> None:
    _register(registry)
    responses = [
        openai_reply(tool_calls=[("call_a", "read", {"path": "notes.md"})]),
        openai_reply("Your notes say: remember the milk."),
    ]
    with fake_server(responses) as server:
        model = pdn.OpenAIModel(
            "gpt-test", base_url=server.url + "/v1", api_key="sk-test", max_retries=0, system_prompt="Be brief."
        )
        rt = make_runtime(host=pdn.PiHost(model=model, cwd=work, tools=["read", "ls"])).start()
        state = rt.wait_for_workflow(rt.start_workflow("ask", "What do my notes say?", instance_id=iid()), timeout=30)
    assert state.status is DONE, state.error
    out = state.output
    assert out["text"] == "Your notes say: remember the milk."
    assert out["usage"] == {"input": 22, "output": 14, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 36}
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "toolResult", "assistant"]
    assert out["messages"][1]["content"] == [
        {"type": "toolCall", "id": "call_a", "name": "read", "arguments": {"path": "notes.md"}}
    ]
    assert out["messages"][1]["stopReason"] == "toolUse" and out["messages"][1]["model"] == "fake-gpt"

    first, second = server.requests
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer sk-test"
    assert first.body["model"] == "gpt-test" and first.body["temperature"] == 0.1
    assert first.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What do my notes say?"},
    ]
    tools = {t["function"]["name"]: t for t in first.body["tools"]}
    assert sorted(tools) == ["ls", "read"] and tools["read"]["type"] == "function"
    assert tools["read"]["function"]["parameters"]["required"] == ["path"]
    assert second.body["messages"][2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "read", "arguments": '{"path": "notes.md"}'}}
        ],
    }
    assert second.body["messages"][3] == {"role": "tool", "tool_call_id": "call_a", "content": "Remember the milk."}


def test_openai_error_response_is_a_catchable_model_error(registry, make_runtime, iid, work) -> None:
    _register(registry)
    with fake_server([openai_error(401, "Incorrect API key provided")]) as server:
        model = pdn.OpenAIModel("gpt-test", base_url=server.url + "/v1", api_key="sk-bad", max_retries=0)
        rt = make_runtime(host=pdn.PiHost(model=model, cwd=work)).start()
        state = rt.wait_for_workflow(rt.start_workflow("ask", "hi", instance_id=iid()), timeout=30)
        assert len(server.requests) == 1
    assert state.status is DONE
    assert state.output["error_type"] == "ModelError"
    message = state.output["error"]
    assert "answered HTTP 401: Incorrect API key provided" in message and "check the key" in message


def test_openai_direct_call_error_has_status_and_provider(work) -> None:
    with fake_server([openai_error(404, "The model `nope` does not exist")]) as server:
        model = pdn.OpenAIModel("nope", base_url=server.url + "/v1", api_key="k", max_retries=0)
        with pytest.raises(pdn.ModelError, match="no such model") as info:
            model.complete([pdn.UserMessage(content="hi")])
    assert info.value.status_code == 404 and info.value.provider == "openai"


def test_anthropic_turn_with_a_tool_use(registry, make_runtime, iid, work) -> None:
    _register(registry)
    responses = [
        anthropic_reply("Let me look.", tool_uses=[("toolu_1", "read", {"path": "notes.md"})]),
        anthropic_reply("Milk."),
    ]
    with fake_server(responses) as server:
        model = pdn.AnthropicModel("claude-test", base_url=server.url, api_key="ak-test", max_retries=0)
        host = pdn.PiHost(model=model, cwd=work, tools=["read"], system_prompt="You are terse.")
        rt = make_runtime(host=host).start()
        state = rt.wait_for_workflow(rt.start_workflow("ask", "Notes?", instance_id=iid()), timeout=30)
    assert state.status is DONE, state.error
    out = state.output
    assert out["text"] == "Milk."
    assert out["messages"][1]["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "toolCall", "id": "toolu_1", "name": "read", "arguments": {"path": "notes.md"}},
    ]
    assert out["messages"][1]["usage"] == {
        "input": 13,
        "output": 5,
        "cacheRead": 2,
        "cacheWrite": 0,
        "totalTokens": 20,
    }

    first, second = server.requests
    assert first.path == "/v1/messages"
    # SDK releases differ in how they send the key: x-api-key, or a bearer token.
    assert first.headers.get("x-api-key") == "ak-test" or first.headers.get("authorization") == "Bearer ak-test"
    assert "anthropic-version" in first.headers
    assert first.body["model"] == "claude-test" and first.body["max_tokens"] == 4096
    assert first.body["system"] == "You are terse." and first.body["temperature"] == 0.1
    assert first.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Notes?"}]}]
    assert first.body["tools"][0]["name"] == "read" and "input_schema" in first.body["tools"][0]
    assert second.body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "notes.md"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Remember the milk.", "is_error": False}
            ],
        },
    ]


def test_anthropic_error_response_is_a_catchable_model_error(registry, make_runtime, iid, work) -> None:
    _register(registry)
    with fake_server([anthropic_error(400, "max_tokens: must be positive")]) as server:
        model = pdn.AnthropicModel("claude-test", base_url=server.url, api_key="k", max_retries=0)
        rt = make_runtime(host=pdn.PiHost(model=model, cwd=work)).start()
        state = rt.wait_for_workflow(rt.start_workflow("ask", "hi", instance_id=iid()), timeout=30)
    assert state.output["error_type"] == "ModelError"
    assert (
        "anthropic API" in state.output["error"] and "HTTP 400: max_tokens: must be positive" in state.output["error"]
    )


def test_missing_api_keys_fail_at_call_time_with_the_variable_name(monkeypatch, work) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    openai_model = pdn.OpenAIModel("gpt-4o-mini")  # building it needs no key
    anthropic_model = pdn.AnthropicModel("claude-sonnet-4-5")
    with pytest.raises(pdn.ModelError, match=r"set \$OPENAI_API_KEY"):
        openai_model.complete([pdn.UserMessage(content="hi")])
    with pytest.raises(pdn.ModelError, match=r"set \$ANTHROPIC_API_KEY"):
        anthropic_model.complete([pdn.UserMessage(content="hi")])


def test_keys_come_from_the_environment(monkeypatch, work) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-from-env")
    with fake_server([openai_reply("hi"), anthropic_reply("hello")]) as server:
        assert (
            pdn.OpenAIModel("m", base_url=server.url + "/v1", max_retries=0)
            .complete([pdn.UserMessage(content="x")])
            .text
            == "hi"
        )
        assert (
            pdn.AnthropicModel("m", base_url=server.url, max_retries=0).complete([pdn.UserMessage(content="x")]).text
            == "hello"
        )
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"
    anthropic_headers = server.requests[1].headers
    assert "ak-from-env" in (anthropic_headers.get("x-api-key"), anthropic_headers.get("authorization", "")[7:])


def test_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = pdn.OpenAIModel("m", base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=5)
    with pytest.raises(pdn.ModelError, match="Could not reach the openai API") as info:
        model.complete([pdn.UserMessage(content="x")])
    assert info.value.status_code is None


def test_importing_the_package_loads_no_sdk() -> None:
    code = "import sys, pi_duroxide_nb; print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_per_call_options_override_the_model_defaults_on_the_wire(registry, make_runtime, iid, work) -> None:
    @registry.register_workflow("options")
    def options(ctx, _):
        hi = [{"role": "user", "content": "hi"}]
        plain = yield ctx.pi.llm(hi)
        custom = yield ctx.pi.llm(hi, model="bigger", temperature=0.7, max_tokens=33, system_prompt="Per call.")
        return [plain["content"][0]["text"], custom["content"][0]["text"]]

    defaults = {"temperature": 0.2, "max_tokens": 99, "system_prompt": "Default."}
    for reply, make_model in [
        (openai_reply, lambda url: pdn.OpenAIModel("small", base_url=url + "/v1", api_key="k", **defaults)),
        (anthropic_reply, lambda url: pdn.AnthropicModel("small", base_url=url, api_key="k", **defaults)),
    ]:
        with fake_server([reply("one"), reply("two")]) as server:
            rt = make_runtime(host=pdn.PiHost(model=make_model(server.url), cwd=work, tools=[])).start()
            state = rt.wait_for_workflow(rt.start_workflow("options", None, instance_id=iid()), timeout=30)
            rt.shutdown()
        assert state.status is DONE and state.output == ["one", "two"], state.error
        (plain, custom) = [r.body for r in server.requests]
        # OpenAI sends the system prompt as the first message, Anthropic as a top-level field.
        system = [b.get("system") or b["messages"][0]["content"] for b in (plain, custom)]
        assert system == ["Default.", "Per call."]
        picked = [(b["model"], b["temperature"], b["max_tokens"]) for b in (plain, custom)]
        assert picked == [("small", 0.2, 99), ("bigger", 0.7, 33)]


def test_anthropic_sends_a_max_tokens_when_none_is_set(work) -> None:
    with fake_server([anthropic_reply("ok")]) as server:
        model = pdn.AnthropicModel("claude-test", base_url=server.url, api_key="k", max_retries=0)
        assert model.complete([pdn.UserMessage(content="hi")]).text == "ok"
    assert server.requests[0].body["max_tokens"] == 4096
    assert "temperature" not in server.requests[0].body and "system" not in server.requests[0].body
