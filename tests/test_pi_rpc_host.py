"""PiRpcHost: ctx.pi through a real pi process (``pi --mode rpc``) on an offline test provider.

One pi process is shared by the tests of this module (``shared``) where the test does not depend
on a fresh one; tests that stop or kill pi use their own host. The provider's rules are in
``pi_test_provider.ts``; its replies name the pid of pi's parent, which is this process.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import pi_duroxide_nb as pdn
from tests.conftest import wait_until
from tests.pi_rpc_support import host_options

DONE = pdn.WorkflowStatus.COMPLETED
TOOLS = ["read", "bash", "edit", "write", "ls"]
ECHO = f"echo({os.getpid()}): "


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pi-rpc")
    work = root / "project"
    work.mkdir()
    (work / "notes.md").write_text("Remember the milk.\n", encoding="utf-8")
    skill = root / "agent" / "skills" / "greet"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(
        "---\nname: greet\ndescription: Greet someone warmly.\n---\n\nGreet the person named below.\n",
        encoding="utf-8",
    )
    # pi retries "503 service unavailable" replies; keep its backoff short for the retry test.
    (root / "agent" / "settings.json").write_text('{"retry": {"maxRetries": 2, "baseDelayMs": 10}}', encoding="utf-8")
    return work


def make_host(pi_bin: Path, project: Path, **kwargs) -> pdn.PiRpcHost:
    options = host_options(pi_bin, project.parent / "agent")
    options.update(kwargs)
    return pdn.PiRpcHost(cwd=project, tools=TOOLS, **options)


@pytest.fixture(scope="module")
def shared(pi_bin: Path, project: Path) -> Iterator[pdn.PiRpcHost]:
    host = make_host(pi_bin, project)
    yield host
    host.close()


def run(rt: pdn.WorkflowRuntime, name: str, input, iid) -> pdn.WorkflowState:
    state = rt.wait_for_workflow(rt.start_workflow(name, input, instance_id=iid()), timeout=60)
    assert state.status is DONE, state.error
    return state


@pytest.mark.timeout(60)
def test_the_five_calls_go_through_pi(shared, registry, make_runtime, iid) -> None:
    @registry.register_workflow("through-pi")
    def through_pi(ctx, _):
        plan = yield ctx.pi.llm([{"role": "user", "content": "Plan the deploy"}])
        notes = yield ctx.pi.tool("read", {"path": "notes.md"})
        turn = yield ctx.pi.prompt("call ls {}")
        greeting = yield ctx.pi.skill("greet", "Ada")
        sent = yield ctx.pi.send_message(f"plan: {plan['content'][0]['text']}")
        return {"plan": plan, "notes": notes, "turn": turn, "greeting": greeting, "sent": sent}

    rt = make_runtime(host=shared).start()
    state = run(rt, "through-pi", None, iid)
    out = state.output

    assert out["plan"]["role"] == "assistant" and out["plan"]["stopReason"] == "stop"
    assert out["plan"]["content"] == [{"type": "text", "text": ECHO + "Plan the deploy"}]
    assert out["plan"]["provider"] == "pdn-test" and out["plan"]["model"] == "echo"

    assert out["notes"]["content"] == [{"type": "text", "text": "Remember the milk.\n"}]

    turn = out["turn"]
    assert [m["role"] for m in turn["messages"]] == ["user", "assistant", "toolResult", "assistant"]
    assert turn["messages"][1]["content"][0] == {"type": "toolCall", "id": turn["messages"][2]["toolCallId"],
                                                 "name": "ls", "arguments": {}}  # fmt: skip
    assert turn["messages"][2]["toolName"] == "ls" and turn["messages"][2]["isError"] is False
    assert turn["text"] == "done: notes.md" and turn["stopReason"] == "stop"
    assert turn["usage"] == {"input": 20, "output": 10, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 30, "cost": 0.0}

    # pi expanded its own skill: the model got the skill block, then the input.
    assert out["greeting"].startswith(ECHO + '<skill name="greet" location="')
    assert "Greet the person named below.\n</skill>\n\nAda" in out["greeting"]

    assert out["sent"] == {"sent": True}
    logged = [(e.custom_type, e.content) for e in rt.messages(state.instance_id)]
    assert logged == [
        ("workflow_tool_call", 'read {"path": "notes.md"}'),
        ("workflow_tool_call", "ls {}"),  # run by pi's model inside the prompt turn
        ("workflow_message", f"plan: {ECHO}Plan the deploy"),
    ]


def test_llm_options_system_prompt_and_tools(shared) -> None:
    def text(reply: dict) -> str:
        return "".join(b["text"] for b in reply["content"] if b["type"] == "text")

    assert text(shared.llm([{"role": "user", "content": "system?"}], {})) == ""  # not pi's agent prompt
    assert text(shared.llm([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "system?"}], {}))\
        == "Be brief."  # fmt: skip
    assert text(shared.llm([{"role": "user", "content": "system?"}], {"system_prompt": "Be kind."})) == "Be kind."
    assert text(shared.llm([{"role": "user", "content": "tools?"}], {})) == ""
    assert text(shared.llm([{"role": "user", "content": "tools?"}], {"tools": True})) == ",".join(TOOLS)
    assert text(shared.llm([{"role": "user", "content": "tools?"}], {"tools": ["read"]})) == "read"
    with pytest.raises(pdn.ToolDeniedError, match="does not allow: \\['grep'\\]"):
        shared.llm([{"role": "user", "content": "tools?"}], {"tools": ["grep"]})
    with pytest.raises(pdn.ModelError, match='pi knows no model "nope"'):
        shared.llm([{"role": "user", "content": "hi"}], {"model": "nope"})
    with pytest.raises(pdn.PayloadError, match="invalid options"):
        shared.llm([{"role": "user", "content": "hi"}], {"temprature": 1})


def test_prompt_options_last_one_turn(shared) -> None:
    assert shared.prompt("system?", {"system_prompt": "You are terse."})["text"] == "You are terse."
    assert "operating inside pi" in shared.prompt("system?", {})["text"]  # pi's own prompt is back
    assert shared.prompt("call ls {}", {"tools": False})["messages"][2]["content"][0]["text"] == "Tool ls not found"
    assert shared.prompt("call ls {}", {})["text"] == "done: notes.md"  # the tools are back
    with pytest.raises(pdn.PayloadError, match="no temperature or max_tokens"):
        shared.prompt("hi", {"temperature": 0.2})


def test_failures_are_typed_and_catchable_in_the_workflow(shared, registry, make_runtime, iid) -> None:
    @registry.register_workflow("failures")
    def failures(ctx, _):
        errors = []
        calls = [
            ctx.pi.tool("nope", {}),
            ctx.pi.tool("grep", {"pattern": "x"}),
            ctx.pi.tool("read", {"file": "x"}),
            ctx.pi.tool("read", {"path": "missing.md"}),
            ctx.pi.tool("bash", {"command": "echo out; exit 3"}),
            ctx.pi.prompt("fail: the provider is down"),
            ctx.pi.llm([{"role": "user", "content": "fail: no quota"}]),
            ctx.pi.skill("nope", None),
        ]
        for call in calls:
            try:
                yield call
            except pdn.ActivityError as err:
                errors.append([err.error_type, err.error_message])
        return errors

    rt = make_runtime(host=shared).start()
    errors = run(rt, "failures", None, iid).output
    assert [e[0] for e in errors] == ["ToolError", "ToolDeniedError", "ToolError", "ToolError", "ToolError",
                                      "ModelError", "ModelError", "SkillNotFoundError"]  # fmt: skip
    assert "pi has no built-in tool 'nope'" in errors[0][1]
    assert "not allowed by PiRpcHost(tools=" in errors[1][1]
    assert 'Validation failed for tool "read"' in errors[2][1]
    assert "path: must have required properties path" in errors[2][1]
    assert "pi's read tool failed" in errors[3][1] and "missing.md" in errors[3][1]
    assert "out" in errors[4][1] and "Command exited with code 3" in errors[4][1]
    assert "the model failed in pi: the provider is down" in errors[5][1]
    assert "pdn-test/echo failed: no quota" in errors[6][1]
    assert "Skill 'nope' not found" in errors[7][1] and "Skills found: greet" in errors[7][1]


def test_dialogs_are_answered_or_cancelled(shared) -> None:
    # The test extension asks to confirm every bash call; nobody is there, so it is cancelled.
    cancelled = shared.prompt('call bash {"command": "echo hi"}', {})
    assert cancelled["text"] == "done: bash was not confirmed"
    seen: list[dict] = []

    def approve(request: dict) -> dict:
        seen.append(request)
        return {"confirmed": True}

    shared.on_ui_request = approve
    try:
        confirmed = shared.prompt('call bash {"command": "echo hi"}', {})
    finally:
        shared.on_ui_request = None
    assert confirmed["text"] == "done: hi\n"
    assert [(r["method"], r["title"], r["message"]) for r in seen] == [("confirm", "Run bash?", "echo hi")]

    def broken(request: dict) -> dict:
        raise RuntimeError("the person left")

    for handler in (broken, lambda request: True):  # a failing or wrong answer cancels the dialog
        shared.on_ui_request = handler
        try:
            assert shared.prompt('call bash {"command": "echo hi"}', {})["text"] == "done: bash was not confirmed"
        finally:
            shared.on_ui_request = None


def test_pi_retries_and_the_turn_keeps_only_the_answer(shared) -> None:
    turn = shared.prompt("flaky: deploy", {})
    assert turn["text"] == "recovered: deploy"
    assert [m["role"] for m in turn["messages"]] == ["user", "assistant"]


def test_slash_commands_of_extensions_are_refused_as_prompts(shared) -> None:
    with pytest.raises(pdn.PayloadError, match="runs pi's extension command 'pi-duroxide-nb'"):
        shared.prompt('/pi-duroxide-nb {"op": "send", "content": "x"}', {})


def test_keep_context_continues_one_conversation(shared, pi_bin, project) -> None:
    with make_host(pi_bin, project, keep_context=True) as host:
        host.prompt("hello", {})
        host.send_message("the deploy is approved")
        # hello, its answer, the workflow message, and this prompt
        assert host.prompt("count?", {})["text"] == "4"
    shared.prompt("hello", {})
    shared.send_message("the deploy is approved")
    assert shared.prompt("count?", {})["text"] == "1"  # by default each turn starts afresh, as with PiHost


def test_pi_is_restarted_after_it_dies_and_after_a_timeout(pi_bin, project) -> None:
    host = make_host(pi_bin, project)
    try:
        assert host.pid is None and host.starts == 0  # started lazily
        assert host.prompt("hello", {})["text"] == ECHO + "hello"
        first = host.pid
        assert first is not None and host.starts == 1

        os.kill(first, signal.SIGKILL)  # dies between calls: the next call starts a new pi
        wait_until(lambda: host.pid is None)
        assert host.prompt("hello", {})["text"] == ECHO + "hello"
        assert host.starts == 2 and host.pid not in (None, first)

        killed = threading.Event()

        def kill_mid_turn(request: dict) -> None:
            os.kill(host.pid or 0, signal.SIGKILL)  # dies in the middle of a turn
            killed.set()

        host.on_ui_request = kill_mid_turn
        with pytest.raises(pdn.PiProcessError, match=r"pi exited \(code -9\); the next call starts it again"):
            host.prompt('call bash {"command": "echo hi"}', {})
        assert killed.is_set()
        host.on_ui_request = None
        assert host.tool("read", {"path": "notes.md"})["content"][0]["text"] == "Remember the milk.\n"
        assert host.starts == 3

        host.timeout = 1.0
        with pytest.raises(pdn.PiProcessError, match="no answer within the time limit; pi was stopped"):
            host.prompt("sleep: 60000", {})
        assert host.pid is None
        host.timeout = 60.0
        assert host.prompt("hello", {})["text"] == ECHO + "hello" and host.starts == 4
    finally:
        host.close()
    assert host.pid is None


def test_errors_say_what_is_missing_and_how_to_install(pi_bin, project, tmp_path) -> None:
    missing = pdn.PiRpcHost(cwd=project, command=[str(tmp_path / "no-pi")])
    with pytest.raises(pdn.PiProcessError, match="cannot start .*no-pi.*npm install -g @mariozechner/pi-coding-agent"):
        missing.prompt("hi", {})
    no_node = pdn.PiRpcHost(cwd=project, command=[str(pi_bin)], env={"PATH": str(tmp_path)})
    with pytest.raises(pdn.PiProcessError, match="needs Node.js, which was not found on PATH.*apt-get install nodejs"):
        no_node.prompt("hi", {})
    not_on_path = pdn.PiRpcHost(cwd=project, env={"PATH": str(tmp_path)})
    with pytest.raises(pdn.PiProcessError, match="`pi` was not found on PATH"):
        not_on_path.llm([{"role": "user", "content": "hi"}], {})
    # pi starts, reports a broken extension on stderr and exits: its stderr is in the error.
    broken = tmp_path / "broken.ts"
    broken.write_text("export default function (pi) { throw new Error('extension exploded'); }\n", encoding="utf-8")
    with make_host(pi_bin, project, extensions=[broken]) as host, pytest.raises(pdn.PiProcessError) as info:
        host.prompt("hi", {})
    assert "extension exploded" in str(info.value) and "extension exploded" in info.value.stderr


def test_constructor_checks_its_arguments(project, tmp_path) -> None:
    with pytest.raises(ValueError, match="not pi's built-in tools"):
        pdn.PiRpcHost(cwd=project, tools=["read", "fly"])
    with pytest.raises(ValueError, match="is not a directory"):
        pdn.PiRpcHost(cwd=tmp_path / "nope")
    with pytest.raises(ValueError, match="positive duration"):
        pdn.PiRpcHost(cwd=project, timeout=0)
    with pytest.raises(TypeError, match="list of arguments"):
        pdn.PiRpcHost(cwd=project, args="--thinking low")  # type: ignore[arg-type]
    host = pdn.PiRpcHost(cwd=project, provider="anthropic", model="claude-sonnet-4-5", tools=["read"])
    argv = host.command_line()
    assert argv[:8] == ["pi", "--mode", "rpc", "--no-session", "--provider", "anthropic", "--model",
                        "claude-sonnet-4-5"]  # fmt: skip
    assert argv[8:10] == ["--tools", "read"] and argv[10] == "-e" and argv[11].endswith("rpc_bridge.ts")
    assert Path(argv[11]).is_file()  # shipped as package data
    assert isinstance(host, pdn.AgentHost) and host.pid is None
    assert repr(host).startswith("<PiRpcHost provider='anthropic'") and "not running" in repr(host)
